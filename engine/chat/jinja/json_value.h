// JSON in and out of Jinja values. In: chat messages and tools (parsed by the caller with
// nlohmann::ordered_json, so objects keep their key order as Python's json.loads does).
// Out: transformers' `tojson` filter, which is Python's json.dumps(x, ensure_ascii=False,
// indent=None, separators=None, sort_keys=False) with those four arguments open to the
// template; the text must be byte-identical to CPython's (float repr, ", "/": " separators,
// raw UTF-8, \uXXXX only for control characters).
//
// Used by ChatTemplate (input) and the tojson filter (output).
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/value.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine::jinja {

// Deepest JSON nesting accepted as input (CPython's json would hit its recursion limit near
// 1,000; real messages and tool schemas nest a few levels).
inline constexpr int kMaxJsonInputDepth = 100;

// Integers beyond int64 become floats. Errors only for nesting deeper than kMaxJsonInputDepth.
absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json);

struct JsonDumpOptions {
  bool ensure_ascii = false;
  // indent: nullopt is one line; a number of spaces or a string per level otherwise.
  std::optional<std::string> indent;
  // separators: (item, key); defaults are (", ", ": ") on one line, (",", ": ") indented.
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};

// json.dumps. Errors (TypeError in Python) for undefined values, generators, objects, and
// keys that are not str, int, float, bool or None.
absl::StatusOr<std::string> PythonJsonDumps(const Value& value, const JsonDumpOptions& options);

}  // namespace moeserve::engine::jinja
