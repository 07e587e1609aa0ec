// The global functions of transformers' chat-template environment: Jinja's range (capped at
// the sandbox's MAX_RANGE), dict and namespace, and transformers' raise_exception and
// strftime_now.
#include <sys/time.h>

#include <ctime>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/chat/jinja/builtins.h"
#include "engine/chat/jinja/call_args.h"
#include "engine/chat/jinja/evaluator.h"

namespace moeserve::engine::jinja {
namespace {

// jinja2.sandbox.MAX_RANGE: the largest range() a sandboxed template may build.
constexpr int64_t kMaxRange = 100000;

absl::StatusOr<Value> Range(Evaluator& ev, CallArgs args) {
  if (!args.keyword.empty())
    return absl::InvalidArgumentError("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("range expected at most 3 arguments, got ", p.size()));
  }
  for (const Value& v : p) {
    if (!v.is_integral()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
    }
  }
  const int64_t start = p.size() == 1 ? 0 : p[0].as_int();
  const int64_t stop = p.size() == 1 ? p[0].as_int() : p[1].as_int();
  const int64_t step = p.size() == 3 ? p[2].as_int() : 1;
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  // Count in long double so extreme bounds cannot overflow.
  const long double span = static_cast<long double>(stop) - static_cast<long double>(start);
  long double count = span / static_cast<long double>(step);
  if (count < 0) count = 0;
  if (count > kMaxRange) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (", kMaxRange, ")."));
  }
  if (absl::Status status = ev.Charge(static_cast<int64_t>(count)); !status.ok()) return status;
  std::vector<Value> items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::Int(i));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> MakeDict(Evaluator&, CallArgs args) {
  Dict dict;
  if (args.positional.size() > 1)
    return absl::InvalidArgumentError("dict expected at most 1 argument");
  if (!args.positional.empty()) {
    if (!args.positional[0].is_dict()) {
      return absl::InvalidArgumentError("dict() argument must be a mapping here");
    }
    dict = args.positional[0].as_dict();
  }
  for (auto& [key, value] : args.keyword) dict.Set(Value::String(key), std::move(value));
  return Value::FromDict(std::move(dict));
}

absl::StatusOr<Value> MakeNamespace(Evaluator&, CallArgs args) {
  auto ns = std::make_shared<Namespace>();
  for (const Value& mapping : args.positional) {
    if (!mapping.is_dict()) return absl::InvalidArgumentError("namespace() takes a mapping");
    for (const auto& [key, value] : mapping.as_dict().entries()) ns->SetAttr(key.Str(), value);
  }
  for (auto& [key, value] : args.keyword) ns->SetAttr(key, std::move(value));
  return Value::FromObject(std::move(ns));
}

// transformers: raise jinja2.exceptions.TemplateError(message).
absl::StatusOr<Value> RaiseException(Evaluator&, CallArgs args) {
  absl::StatusOr<std::vector<Value>> a =
      BindArgs("raise_exception", std::move(args), {{"message", std::nullopt}});
  if (!a.ok()) return a.status();
  absl::Status status = absl::InvalidArgumentError((*a)[0].Str());
  status.SetPayload(kRaiseExceptionPayload, absl::Cord("1"));
  return status;
}

// transformers: datetime.now().strftime(format), local time. Python handles %f itself.
absl::StatusOr<Value> StrftimeNow(Evaluator&, CallArgs args) {
  absl::StatusOr<std::vector<Value>> a =
      BindArgs("strftime_now", std::move(args), {{"format", std::nullopt}});
  if (!a.ok()) return a.status();
  if (!(*a)[0].is_string()) return absl::InvalidArgumentError("strftime() argument must be str");
  timeval now{};
  gettimeofday(&now, nullptr);
  std::tm local{};
  localtime_r(&now.tv_sec, &local);
  char micros[8];
  std::snprintf(micros, sizeof(micros), "%06ld", static_cast<long>(now.tv_usec));
  const std::string format =
      absl::StrReplaceAll((*a)[0].as_string(), {{"%%", "%%"}, {"%f", micros}});
  if (format.size() > 1024) return absl::InvalidArgumentError("strftime format too long");
  std::string out(format.size() * 8 + 64, '\0');
  const size_t length = std::strftime(out.data(), out.size(), format.c_str(), &local);
  out.resize(length);
  return Value::String(std::move(out));
}

}  // namespace

Dict GlobalFunctions() {
  Dict globals;
  const std::pair<const char*, NativeFunction::Fn> functions[] = {
      {"range", Range},
      {"dict", MakeDict},
      {"namespace", MakeNamespace},
      {"raise_exception", RaiseException},
      {"strftime_now", StrftimeNow}};
  for (const auto& [name, fn] : functions) {
    globals.Set(Value::String(name), Value::FromObject(std::make_shared<NativeFunction>(name, fn)));
  }
  return globals;
}

}  // namespace moeserve::engine::jinja
