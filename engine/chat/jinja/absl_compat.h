// Debian's Abseil has its own string_view type, distinct from std::string_view, and StrCat
// only takes the former; this converts at StrCat call sites in the Jinja interpreter.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace moeserve::engine::jinja {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace moeserve::engine::jinja
