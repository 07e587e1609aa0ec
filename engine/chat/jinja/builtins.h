// Jinja's built-in filters (`x | trim`), tests (`x is defined`), the methods templates call on
// strings, dicts and lists (`s.split()`, `d.items()`), and the global functions transformers'
// environment offers (range, dict, namespace, raise_exception, strftime_now, ...), each with
// the Python semantics Jinja2 3.1 gives it, including transformers' own tojson.
//
// Called by the parser (to reject unknown filters and tests at parse time, as Jinja does) and
// by the evaluator. Errors are bare messages; the evaluator adds the template and line.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

absl::StatusOr<Value> ApplyFilter(Evaluator& evaluator, std::string_view name, const Value& input,
                                  CallArgs args);
absl::StatusOr<bool> ApplyTest(Evaluator& evaluator, std::string_view name, const Value& input,
                               CallArgs args);

// `self.name` when it names a method of self's type: a bound method value, or the sandbox's
// "unsafe" Undefined for methods that would mutate (list.append, dict.update, ...).
std::optional<Value> LookupMethod(const Value& self, std::string_view name);

// The globals of transformers' environment: range, dict, namespace, lipsum-free subset,
// raise_exception, strftime_now.
Dict GlobalFunctions();

// A native function as a callable value.
class NativeFunction : public Object {
 public:
  using Fn = absl::StatusOr<Value> (*)(Evaluator&, CallArgs);
  NativeFunction(std::string name, Fn fn) : name_(std::move(name)), fn_(fn) {}
  std::string TypeName() const override { return "builtin_function_or_method"; }
  std::string Repr() const override { return "<built-in function " + name_ + ">"; }
  bool IsCallable() const override { return true; }
  absl::StatusOr<Value> Call(Evaluator& evaluator, CallArgs args) override {
    return fn_(evaluator, std::move(args));
  }

 private:
  std::string name_;
  Fn fn_;
};

// Payload type URL on the status raise_exception() returns, so callers can tell a template's
// own refusal ("Conversation roles must alternate ...") from an error in the template.
inline constexpr char kRaiseExceptionPayload[] = "moeserve.chat_template/raise_exception";

}  // namespace moeserve::engine::jinja
