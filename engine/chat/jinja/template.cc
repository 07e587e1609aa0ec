#include "engine/chat/jinja/template.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/lexer.h"
#include "engine/chat/jinja/parser.h"

namespace moeserve::engine::jinja {
namespace {

// "line 3: unknown filter" → "ORIGIN line 3: unknown filter"; other messages get "ORIGIN: ".
absl::Status WithOrigin(const absl::Status& status, const std::string& origin) {
  const absl::string_view message = status.message();
  const std::string text = absl::StartsWith(message, "line ") ? absl::StrCat(origin, " ", message)
                                                              : absl::StrCat(origin, ": ", message);
  return absl::Status(status.code(), text);
}

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source, std::string origin) {
  absl::StatusOr<std::vector<Token>> tokens = Tokenize(source);
  if (!tokens.ok()) return WithOrigin(tokens.status(), origin);
  absl::StatusOr<Body> body = jinja::Parse(*std::move(tokens));
  if (!body.ok()) return WithOrigin(body.status(), origin);
  return Template(std::make_shared<const Body>(*std::move(body)), std::move(origin));
}

absl::StatusOr<std::string> Template::Render(const Dict& context,
                                             const RenderLimits& limits) const {
  Evaluator evaluator(limits, GlobalFunctions());
  absl::StatusOr<std::string> text = evaluator.Render(*body_, context);
  if (!text.ok() && !IsRaisedByTemplate(text.status())) return WithOrigin(text.status(), origin_);
  return text;
}

bool IsRaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(kRaiseExceptionPayload).has_value();
}

}  // namespace moeserve::engine::jinja
