// Strict JSON parsing for checkpoint files (internal to engine/io).
//
// nlohmann's DOM silently keeps the last value when an object repeats a key, which would let a
// malformed safetensors header or index hide a tensor. ParseStrictJson rejects repeated keys at
// any depth, rejects comments, and turns nlohmann's parse exceptions into absl::Status so
// callers (the safetensors reader and Checkpoint's index reader) stay exception-free.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine::io_internal {

// This Abseil's string_view is its own type, not std::string_view, and StrCat only takes the
// former; the io API speaks std::string_view, so convert at the StrCat call sites.
inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Parses `text` as one JSON value. `file_name` only labels error messages. Errors are
// InvalidArgument: a syntax error (with nlohmann's position), invalid UTF-8 in a string, or a
// key repeated within one object (message names the key and the keys of the enclosing objects).
inline absl::StatusOr<nlohmann::json> ParseStrictJson(std::string_view text,
                                                      std::string_view file_name) {
  // One frame per open object: the keys seen so far and the key currently being read, so a
  // duplicate can be reported with its path (for a header: the tensor it belongs to).
  struct Frame {
    std::unordered_set<std::string> keys;
    std::string current_key;
  };
  std::vector<Frame> frames;
  bool has_duplicate = false;
  std::vector<std::string> duplicate_path;

  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                      nlohmann::json& parsed) -> bool {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
        frames.emplace_back();
        break;
      case Event::object_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case Event::key: {
        if (frames.empty()) break;  // cannot happen for well-formed events; be defensive
        std::string key = parsed.get<std::string>();
        if (!frames.back().keys.insert(key).second && !has_duplicate) {
          has_duplicate = true;
          for (size_t i = 0; i + 1 < frames.size(); ++i) {
            duplicate_path.push_back(frames[i].current_key);
          }
          duplicate_path.push_back(key);
        }
        frames.back().current_key = std::move(key);
        break;
      }
      default:
        break;
    }
    return true;  // always keep values: the DOM must be complete for the caller
  };

  nlohmann::json result;
  try {
    result = nlohmann::json::parse(text.begin(), text.end(), callback,
                                   /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(file_name), ": invalid JSON: ", e.what()));
  }
  if (has_duplicate) {
    const std::string key = duplicate_path.back();
    duplicate_path.pop_back();
    return absl::InvalidArgumentError(absl::StrCat(
        AsAbsl(file_name), ": duplicate key '", key, "'",
        duplicate_path.empty()
            ? std::string(" in the top-level object")
            : absl::StrCat(" in object '", absl::StrJoin(duplicate_path, "' > '"), "'")));
  }
  return result;
}

}  // namespace moeserve::engine::io_internal
