// Binding a call's arguments to a built-in's parameters the way Python does: positional
// first, then keywords by name, then defaults; an unknown keyword or a missing required
// argument is a TypeError-style error naming the function. Internal to the builtins.
#pragma once

#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

struct Param {
  std::string_view name;
  std::optional<Value> default_value;  // nullopt: required
};

// One value per parameter, in declaration order. With `rest`, extra positionals are
// appended there instead of being an error (for select's test arguments and the like).
inline absl::StatusOr<std::vector<Value>> BindArgs(std::string_view function, CallArgs args,
                                                   std::initializer_list<Param> params,
                                                   std::vector<Value>* rest = nullptr) {
  std::vector<std::optional<Value>> bound(params.size());
  size_t i = 0;
  for (; i < args.positional.size(); ++i) {
    if (i < params.size()) {
      bound[i] = std::move(args.positional[i]);
    } else if (rest != nullptr) {
      rest->push_back(std::move(args.positional[i]));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(Sv(function), "() takes at most ",
                                                     params.size(), " arguments (",
                                                     args.positional.size(), " given)"));
    }
  }
  for (auto& [name, value] : args.keyword) {
    size_t index = 0;
    for (const Param& param : params) {
      if (param.name == name) break;
      ++index;
    }
    if (index == params.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(function), "() got an unexpected keyword argument '", name, "'"));
    }
    if (bound[index]) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(function), "() got multiple values for argument '", name, "'"));
    }
    bound[index] = std::move(value);
  }
  std::vector<Value> out;
  out.reserve(params.size());
  size_t index = 0;
  for (const Param& param : params) {
    if (!bound[index]) {
      if (!param.default_value) {
        return absl::InvalidArgumentError(
            absl::StrCat(Sv(function), "() missing required argument '", Sv(param.name), "'"));
      }
      bound[index] = *param.default_value;
    }
    out.push_back(*std::move(bound[index]));
    ++index;
  }
  return out;
}

}  // namespace moeserve::engine::jinja
