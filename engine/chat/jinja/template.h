// A compiled Jinja template, rendered the way transformers renders chat templates: Jinja2
// 3.1 in an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
// loopcontrols extension ({% break %}, {% continue %}), the {% generation %} tag, and the
// globals raise_exception, strftime_now, range, dict and namespace (see builtins.h).
//
// This is the interpreter's public face; ChatTemplate (engine/chat/chat_template.h) builds the
// chat variables and calls it. A Template is immutable after Parse and may be rendered from
// several threads at once (each Render has its own evaluator).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/ast.h"
#include "engine/chat/jinja/evaluator.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

class Template {
 public:
  // `origin` names the template in errors, e.g. "chat template (tokenizer_config.json)":
  // InvalidArgument "chat template (tokenizer_config.json) line 12: unknown filter 'foo'".
  static absl::StatusOr<Template> Parse(std::string_view source, std::string origin);

  // Renders with `context` as the template's variables. Errors name the origin and line,
  // except raise_exception(message), whose InvalidArgument carries exactly `message` and the
  // kRaiseExceptionPayload (builtins.h); exceeding `limits` is ResourceExhausted.
  absl::StatusOr<std::string> Render(const Dict& context, const RenderLimits& limits = {}) const;

  const std::string& origin() const { return origin_; }

 private:
  Template(std::shared_ptr<const Body> body, std::string origin)
      : body_(std::move(body)), origin_(std::move(origin)) {}

  std::shared_ptr<const Body> body_;
  std::string origin_;
};

// True for the status of a template's raise_exception() call.
bool IsRaisedByTemplate(const absl::Status& status);

}  // namespace moeserve::engine::jinja
