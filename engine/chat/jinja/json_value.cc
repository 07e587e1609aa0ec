#include "engine/chat/jinja/json_value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/chat/jinja/python_text.h"

namespace moeserve::engine::jinja {
namespace {

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json, int depth) {
  if (depth > kMaxJsonInputDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON nests deeper than ", kMaxJsonInputDepth, " levels"));
  }
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) {
        absl::StatusOr<Value> value = FromJson(item, depth + 1);
        if (!value.ok()) return value.status();
        items.push_back(*std::move(value));
      }
      return Value::List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [key, item] : json.items()) {
        absl::StatusOr<Value> value = FromJson(item, depth + 1);
        if (!value.ok()) return value.status();
        dict.Set(Value::String(key), *std::move(value));
      }
      return Value::FromDict(std::move(dict));
    }
    default:
      return absl::InvalidArgumentError("binary JSON values are not supported");
  }
}

void AppendJsonString(std::string_view text, bool ensure_ascii, std::string& out) {
  out.push_back('"');
  for (char32_t c : DecodeUtf8(text)) {
    char escape[16];
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c > 0x7e)) {
          if (c > 0xffff) {  // a UTF-16 surrogate pair, as json.dumps writes it
            const char32_t v = c - 0x10000;
            std::snprintf(escape, sizeof(escape), "\\u%04x\\u%04x",
                          static_cast<unsigned>(0xd800 | (v >> 10)),
                          static_cast<unsigned>(0xdc00 | (v & 0x3ff)));
          } else {
            std::snprintf(escape, sizeof(escape), "\\u%04x", static_cast<unsigned>(c));
          }
          out += escape;
        } else {
          AppendUtf8(c, out);
        }
    }
  }
  out.push_back('"');
}

std::string JsonFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return PythonFloatRepr(d);
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonDumpOptions& options) : options_(options) {
    item_separator_ = options.indent ? "," : ", ";
    key_separator_ = ": ";
    if (options.separators) {
      item_separator_ = options.separators->first;
      key_separator_ = options.separators->second;
    }
  }

  absl::Status Write(const Value& value, int depth) {
    if (out_.size() > (size_t{64} << 20)) {
      return absl::ResourceExhaustedError("tojson output exceeds 64 MiB");
    }
    if (depth > kMaxJsonInputDepth) {
      return absl::ResourceExhaustedError("tojson: the value nests too deeply");
    }
    switch (value.kind()) {
      case Value::Kind::kNone:
        out_ += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        out_ += value.as_bool() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        absl::StrAppend(&out_, value.as_int());
        return absl::OkStatus();
      case Value::Kind::kFloat:
        out_ += JsonFloat(value.as_double());
        return absl::OkStatus();
      case Value::Kind::kString:
        AppendJsonString(value.as_string(), options_.ensure_ascii, out_);
        return absl::OkStatus();
      case Value::Kind::kSequence:
        if (!value.is_generator()) return WriteList(value.items(), depth);
        break;
      case Value::Kind::kDict:
        return WriteDict(value.as_dict(), depth);
      default:
        break;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("Object of type ", value.TypeName(), " is not JSON serializable"));
  }

  std::string Take() { return std::move(out_); }

 private:
  void Newline(int depth) {
    if (!options_.indent) return;
    out_.push_back('\n');
    for (int i = 0; i < depth; ++i) out_ += *options_.indent;
  }

  absl::Status WriteList(const std::vector<Value>& items, int depth) {
    if (items.empty()) {
      out_ += "[]";
      return absl::OkStatus();
    }
    out_.push_back('[');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out_ += item_separator_;
      Newline(depth + 1);
      if (absl::Status status = Write(items[i], depth + 1); !status.ok()) return status;
    }
    Newline(depth);
    out_.push_back(']');
    return absl::OkStatus();
  }

  // Python's json converts non-str keys: True → "true", None → "null", 1 → "1", 1.5 → "1.5".
  static absl::StatusOr<std::string> KeyText(const Value& key) {
    switch (key.kind()) {
      case Value::Kind::kString:
        return key.as_string();
      case Value::Kind::kBool:
        return std::string(key.as_bool() ? "true" : "false");
      case Value::Kind::kNone:
        return std::string("null");
      case Value::Kind::kInt:
        return absl::StrCat(key.as_int());
      case Value::Kind::kFloat:
        return JsonFloat(key.as_double());
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("keys must be str, int, float, bool or None, not ", key.TypeName()));
    }
  }

  absl::Status WriteDict(const Dict& dict, int depth) {
    if (dict.size() == 0) {
      out_ += "{}";
      return absl::OkStatus();
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& entry : dict.entries()) entries.push_back(&entry);
    if (options_.sort_keys) {
      absl::Status sort_status;
      std::stable_sort(entries.begin(), entries.end(), [&](const auto* a, const auto* b) {
        absl::StatusOr<bool> less = LessThan(a->first, b->first);
        if (!less.ok()) sort_status = less.status();
        return less.ok() && *less;
      });
      if (!sort_status.ok()) return sort_status;
    }
    out_.push_back('{');
    bool first = true;
    for (const auto* entry : entries) {
      if (!first) out_ += item_separator_;
      first = false;
      Newline(depth + 1);
      absl::StatusOr<std::string> key = KeyText(entry->first);
      if (!key.ok()) return key.status();
      AppendJsonString(*key, options_.ensure_ascii, out_);
      out_ += key_separator_;
      if (absl::Status status = Write(entry->second, depth + 1); !status.ok()) return status;
    }
    Newline(depth);
    out_.push_back('}');
    return absl::OkStatus();
  }

  const JsonDumpOptions& options_;
  std::string item_separator_;
  std::string key_separator_;
  std::string out_;
};

}  // namespace

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json) {
  return FromJson(json, 0);
}

absl::StatusOr<std::string> PythonJsonDumps(const Value& value, const JsonDumpOptions& options) {
  JsonWriter writer(options);
  if (absl::Status status = writer.Write(value, 0); !status.ok()) return status;
  return writer.Take();
}

}  // namespace moeserve::engine::jinja
