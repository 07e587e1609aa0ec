#include "engine/chat/jinja/string_format.h"

#include <cctype>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/absl_compat.h"

namespace moeserve::engine::jinja {

absl::StatusOr<Value> PercentFormat(std::string_view format, const Value& args) {
  std::vector<Value> positional;
  const Dict* mapping = nullptr;
  if (args.is_sequence() && args.as_sequence().kind == SequenceKind::kTuple) {
    positional = args.items();
  } else if (args.is_dict()) {
    mapping = &args.as_dict();
  } else {
    positional.push_back(args);
  }
  size_t next_arg = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    if (format[i] == '%') {
      out.push_back('%');
      continue;
    }
    const Value* arg = nullptr;
    if (format[i] == '(') {
      const size_t close = format.find(')', i);
      if (close == std::string_view::npos || mapping == nullptr) {
        return absl::InvalidArgumentError("format requires a mapping");
      }
      arg = mapping->Find(format.substr(i + 1, close - i - 1));
      if (arg == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("KeyError: '", Sv(format.substr(i + 1, close - i - 1)), "'"));
      }
      i = close + 1;
    }
    std::string spec = "%";
    while (i < format.size() &&
           std::string_view("-+ #0").find(format[i]) != std::string_view::npos) {
      spec.push_back(format[i++]);
    }
    while (i < format.size() &&
           (std::isdigit(static_cast<unsigned char>(format[i])) || format[i] == '.')) {
      spec.push_back(format[i++]);
    }
    if (i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    const char conversion = format[i];
    if (arg == nullptr) {
      if (next_arg >= positional.size()) {
        return absl::InvalidArgumentError("not enough arguments for format string");
      }
      arg = &positional[next_arg++];
    }
    char buffer[512];
    switch (conversion) {
      case 's':
      case 'r': {
        const std::string text = conversion == 's' ? arg->Str() : arg->Repr();
        // Width and precision apply to the text; %s of long text skips snprintf's buffer.
        if (spec == "%") {
          out += text;
        } else {
          std::snprintf(buffer, sizeof(buffer), (spec + "s").c_str(), text.c_str());
          out += buffer;
        }
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
        if (!arg->is_number()) {
          return absl::InvalidArgumentError(absl::StrCat("%", std::string(1, conversion),
                                                         " format: a real number is required, not ",
                                                         arg->TypeName()));
        }
        std::snprintf(
            buffer, sizeof(buffer), (spec + "ll" + (conversion == 'i' ? 'd' : conversion)).c_str(),
            static_cast<long long>(arg->is_float() ? static_cast<int64_t>(arg->as_double())
                                                   : arg->as_int()));
        out += buffer;
        break;
      case 'f':
      case 'F':
      case 'e':
      case 'g':
        if (!arg->is_number()) {
          return absl::InvalidArgumentError(
              absl::StrCat("must be real number, not ", arg->TypeName()));
        }
        std::snprintf(buffer, sizeof(buffer), (spec + conversion).c_str(), arg->as_double());
        out += buffer;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported format character '", std::string(1, conversion), "'"));
    }
  }
  if (mapping == nullptr && next_arg < positional.size()) {
    return absl::InvalidArgumentError("not all arguments converted during string formatting");
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> BraceFormat(std::string_view format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = format.find('}', i);
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    }
    std::string_view field = format.substr(i + 1, close - i - 1);
    i = close;
    bool use_repr = false;
    if (const size_t bang = field.find('!'); bang != std::string_view::npos) {
      use_repr = field.substr(bang + 1) == "r";
      field = field.substr(0, bang);
    }
    if (field.find(':') != std::string_view::npos) {
      return absl::InvalidArgumentError("format specs in str.format() are not supported");
    }
    const Value* arg = nullptr;
    if (field.empty() || std::isdigit(static_cast<unsigned char>(field[0]))) {
      const size_t index = field.empty() ? auto_index++ : std::stoul(std::string(field));
      if (index >= args.positional.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("Replacement index ", index, " out of range for positional args tuple"));
      }
      arg = &args.positional[index];
    } else {
      for (const auto& [name, value] : args.keyword) {
        if (name == field) arg = &value;
      }
      if (arg == nullptr)
        return absl::InvalidArgumentError(absl::StrCat("KeyError: '", Sv(field), "'"));
    }
    out += use_repr ? arg->Repr() : arg->Str();
  }
  return Value::String(std::move(out));
}

}  // namespace moeserve::engine::jinja
