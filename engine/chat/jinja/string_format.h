// Python's two string-formatting mini-languages as templates use them: printf-style
// `"%s: %d" % (a, b)` (also the `format` filter) and `"{}: {name}".format(a, name=b)`.
// Conversions s, r, d, i, f, x and %% with flags, width and precision; format() fields
// without a format spec. Anything else is an error naming what is unsupported.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat/jinja/value.h"

namespace moeserve::engine::jinja {

// `format % args`: args is a tuple of positional values, a dict for %(name)s, or one value.
absl::StatusOr<Value> PercentFormat(std::string_view format, const Value& args);

// `format.format(*args, **kwargs)`.
absl::StatusOr<Value> BraceFormat(std::string_view format, const CallArgs& args);

}  // namespace moeserve::engine::jinja
