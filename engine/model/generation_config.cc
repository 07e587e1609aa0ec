#include "engine/model/generation_config.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/exact_number.h"
#include "engine/io/bounded_file.h"
#include "engine/io/strict_json.h"

namespace moeserve::engine {
namespace {

using Json = nlohmann::json;

absl::Status Bad(const std::string& source, const char* field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field '", field, "' ", why));
}

// A JSON number (not a bool), read as double; nullopt when the key is absent or null.
absl::StatusOr<std::optional<double>> Number(const Json& j, const char* field,
                                             const std::string& source) {
  const auto it = j.find(field);
  if (it == j.end() || it->is_null()) return std::optional<double>();
  if (!it->is_number())
    return Bad(source, field, absl::StrCat("must be a number, got ", it->dump()));
  return std::optional<double>(it->get<double>());
}

}  // namespace

bool GenerationDefaults::empty() const {
  return !temperature && !top_p && !top_k && !min_p && !repetition_penalty && !max_new_tokens &&
         eos_token_ids.empty();
}

std::string GenerationDefaults::Summary() const {
  std::vector<std::string> parts;
  if (temperature) parts.push_back(absl::StrCat("temperature ", ExactNumber(*temperature)));
  if (top_p) parts.push_back(absl::StrCat("top_p ", ExactNumber(*top_p)));
  if (top_k) parts.push_back(absl::StrCat("top_k ", *top_k));
  if (min_p) parts.push_back(absl::StrCat("min_p ", ExactNumber(*min_p)));
  if (repetition_penalty) {
    parts.push_back(absl::StrCat("repetition_penalty ", ExactNumber(*repetition_penalty)));
  }
  if (max_new_tokens) parts.push_back(absl::StrCat("max_new_tokens ", *max_new_tokens));
  if (!eos_token_ids.empty()) {
    parts.push_back(absl::StrCat("eos_token_id ", absl::StrJoin(eos_token_ids, ",")));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

absl::StatusOr<GenerationDefaults> ParseGenerationDefaults(const std::string& text,
                                                           const std::string& source) {
  absl::StatusOr<Json> parsed = io_internal::ParseStrictJson(text, source);
  if (!parsed.ok()) return parsed.status();
  const Json& j = *parsed;
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  GenerationDefaults d;
  auto number = [&](const char* field) { return Number(j, field, source); };

  absl::StatusOr<std::optional<double>> v = number("temperature");
  if (!v.ok()) return v.status();
  if (*v) {
    if (!std::isfinite(**v) || **v < 0) {
      return Bad(source, "temperature",
                 absl::StrCat("must be finite and >= 0, got ", ExactNumber(**v)));
    }
    d.temperature = static_cast<float>(**v);
  }
  if (v = number("top_p"); !v.ok()) return v.status();
  if (*v) {
    if (!(**v > 0 && **v <= 1)) {
      return Bad(source, "top_p", absl::StrCat("must be in (0, 1], got ", ExactNumber(**v)));
    }
    d.top_p = static_cast<float>(**v);
  }
  if (v = number("top_k"); !v.ok()) return v.status();
  if (*v) {
    if (**v != std::floor(**v) || **v < -1 || **v > (1 << 30)) {
      return Bad(source, "top_k", absl::StrCat("must be an integer >= -1, got ", ExactNumber(**v)));
    }
    // HF: 0 disables top-k filtering; the engine spells that -1.
    d.top_k = **v == 0 ? -1 : static_cast<int32_t>(**v);
  }
  if (v = number("min_p"); !v.ok()) return v.status();
  if (*v) {
    if (!(**v >= 0 && **v <= 1)) {
      return Bad(source, "min_p", absl::StrCat("must be in [0, 1], got ", ExactNumber(**v)));
    }
    d.min_p = static_cast<float>(**v);
  }
  if (v = number("repetition_penalty"); !v.ok()) return v.status();
  if (*v) {
    if (!std::isfinite(**v) || **v <= 0) {
      return Bad(source, "repetition_penalty",
                 absl::StrCat("must be finite and > 0, got ", ExactNumber(**v)));
    }
    d.repetition_penalty = static_cast<float>(**v);
  }
  if (v = number("max_new_tokens"); !v.ok()) return v.status();
  if (*v) {
    if (**v != std::floor(**v) || **v < 1 || **v > 1e12) {
      return Bad(source, "max_new_tokens",
                 absl::StrCat("must be an integer >= 1, got ", ExactNumber(**v)));
    }
    d.max_new_tokens = static_cast<int64_t>(**v);
  }
  if (const auto it = j.find("eos_token_id"); it != j.end() && !it->is_null()) {
    const Json list = it->is_array() ? *it : Json::array({*it});
    for (const Json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return Bad(
            source, "eos_token_id",
            absl::StrCat("must be a non-negative integer or a list of them, got ", it->dump()));
      }
      d.eos_token_ids.push_back(id.get<int64_t>());
    }
  }
  return d;
}

absl::StatusOr<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  absl::StatusOr<std::string> text = ReadRegularFile(path, kMaxConfigFileBytes);
  if (absl::IsNotFound(text.status())) return GenerationDefaults{};
  if (!text.ok()) return text.status();
  return ParseGenerationDefaults(*text, path);
}

}  // namespace moeserve::engine
