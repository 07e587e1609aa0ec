// Helpers shared by the filter, test and method implementations (builtins_*.cc): Python's
// str methods that filters reuse, and Jinja's attribute getter for map/selectattr/sort.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/evaluator.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

// str.strip/lstrip/rstrip(chars): `chars` None strips Python whitespace.
absl::StatusOr<std::string> PythonStrip(std::string_view text, const Value& chars, bool left,
                                        bool right);
// str.replace(old, new, count); count < 0 replaces all.
std::string PythonReplace(std::string_view text, std::string_view old_text,
                          std::string_view new_text, int64_t count);
// str.title() and str.capitalize() (Python's, not Jinja's title filter).
std::string PythonTitle(std::string_view text);
std::string PythonCapitalize(std::string_view text);

// Jinja's make_attrgetter: "a.b.0" looks up each part with environment.getitem.
absl::StatusOr<Value> GetAttributePath(Evaluator& evaluator, const Value& item,
                                       const Value& attribute);

// Python's len(); an error for values without one (generators, numbers, None).
absl::StatusOr<int64_t> PythonLength(const Value& value);

absl::StatusOr<Value> CallMethod(Evaluator& evaluator, const Value& self, std::string_view name,
                                 CallArgs args);

}  // namespace moeserve::engine::jinja
