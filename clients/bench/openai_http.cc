#include "clients/bench/openai_http.h"

#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "clients/bench/openai_stream.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {
namespace {

constexpr double kUnaryTimeoutS = 30.0;
// English text averages about four bytes per token in BPE vocabularies.
constexpr size_t kBytesPerTokenEstimate = 4;

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

absl::StatusOr<HttpResponse> HttpFetch(const std::string& url, const std::string* post_body,
                                       const std::string& api_key, double timeout_s) {
  InitCurlOnce();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return absl::InternalError("curl_easy_init failed");
  curl_slist* raw_headers = nullptr;
  raw_headers = curl_slist_append(raw_headers, "Expect:");  // no 100-continue round trip
  if (post_body != nullptr) {
    raw_headers = curl_slist_append(raw_headers, "Content-Type: application/json");
  }
  if (!api_key.empty()) {
    raw_headers =
        curl_slist_append(raw_headers, absl::StrCat("Authorization: Bearer ", api_key).c_str());
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw_headers);
  HttpResponse response;
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000.0));
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  if (post_body != nullptr) {
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, post_body->c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(post_body->size()));
  }
  const CURLcode code = curl_easy_perform(curl.get());
  if (code != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(url, ": ", error[0] != '\0' ? error : curl_easy_strerror(code)));
  }
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

absl::StatusOr<std::string> NormalizeBaseUrl(const std::string& url) {
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--base-url must start with http:// or https://, got '", url, "'"));
  }
  absl::string_view base = url;
  while (absl::ConsumeSuffix(&base, "/")) {
  }
  // The OpenAI SDKs take the base URL with /v1; accept that spelling too.
  if (absl::ConsumeSuffix(&base, "/v1")) {
    while (absl::ConsumeSuffix(&base, "/")) {
    }
  }
  return std::string(base);
}

absl::StatusOr<OpenAiModelInfo> ParseModelList(const std::string& body, const std::string& wanted) {
  const nlohmann::json list = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!list.is_object() || !list.contains("data") || !list["data"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("/v1/models did not answer {\"data\": [...]}: ", OpenAiErrorMessage(body)));
  }
  for (const nlohmann::json& model : list["data"]) {
    if (!model.is_object() || !model.contains("id") || !model["id"].is_string()) continue;
    OpenAiModelInfo info{.id = model["id"].get<std::string>()};
    if (!wanted.empty() && info.id != wanted) continue;
    if (model.contains("max_model_len") && model["max_model_len"].is_number_integer()) {
      info.max_model_len = model["max_model_len"].get<int64_t>();
    } else if (model.contains("meta") && model["meta"].is_object() &&
               model["meta"].contains("n_ctx_train") &&
               model["meta"]["n_ctx_train"].is_number_integer()) {
      info.max_model_len = model["meta"]["n_ctx_train"].get<int64_t>();
    }
    return info;
  }
  if (!wanted.empty()) {
    // A server may serve a name it does not list (aliases); send what was asked for.
    return OpenAiModelInfo{.id = wanted};
  }
  return absl::NotFoundError("/v1/models lists no model: pass --model");
}

absl::StatusOr<OpenAiModelInfo> WaitForOpenAiModel(const std::string& base_url,
                                                   const std::string& api_key,
                                                   const std::string& wanted, double timeout_s) {
  const std::string url = absl::StrCat(base_url, "/v1/models");
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s));
  std::string last = "no answer";
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<HttpResponse> response = HttpFetch(url, nullptr, api_key, 5.0);
    if (response.ok() && response->status == 200) {
      return ParseModelList(response->body, wanted);
    }
    if (response.ok() && (response->status == 401 || response->status == 403)) {
      return absl::PermissionDeniedError(absl::StrCat(url, " answered HTTP ", response->status,
                                                      ": ", OpenAiErrorMessage(response->body),
                                                      " (check --api-key)"));
    }
    last = response.ok()
               ? absl::StrCat("HTTP ", response->status, " ", OpenAiErrorMessage(response->body))
               : std::string(response.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(url, " did not answer after ", timeout_s, " s (last answer: ", last, ")"));
}

OpenAiTokenizer::OpenAiTokenizer(std::string base_url, std::string api_key, std::string model)
    : base_url_(std::move(base_url)), api_key_(std::move(api_key)), model_(std::move(model)) {}

absl::StatusOr<std::vector<uint32_t>> OpenAiTokenizer::Tokenize(const std::string& text,
                                                                bool add_special_tokens) {
  if (!estimating_) {
    const std::string body = nlohmann::json{
        {"model", model_},
        {"prompt", text},
        {"content", text},
        {"add_special_tokens", add_special_tokens},
        {"add_special",
         add_special_tokens}}.dump();
    const std::string url = absl::StrCat(base_url_, "/tokenize");
    absl::StatusOr<HttpResponse> response = HttpFetch(url, &body, api_key_, kUnaryTimeoutS);
    std::string why;
    if (response.ok() && response->status == 200) {
      const nlohmann::json answer =
          nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
      if (answer.is_object() && answer.contains("tokens") && answer["tokens"].is_array()) {
        std::vector<uint32_t> ids;
        for (const nlohmann::json& id : answer["tokens"]) {
          // llama.cpp may answer pieces ({"id", "piece"}) instead of bare ids.
          uint32_t value = 0;
          if (id.is_number_unsigned()) {
            value = id.get<uint32_t>();
          } else if (id.is_object() && id.contains("id") && id["id"].is_number_unsigned()) {
            value = id["id"].get<uint32_t>();
          }
          ids.push_back(value);
        }
        return ids;
      }
      why = "its answer has no \"tokens\" array";
    } else {
      why = response.ok() ? absl::StrCat("HTTP ", response->status) : response.status().ToString();
    }
    std::fprintf(stderr,
                 "moeserve-bench: cannot count tokens with %s (%s): estimating %zu bytes per "
                 "token; the report's prompt lengths come from the server's usage\n",
                 url.c_str(), why.c_str(), kBytesPerTokenEstimate);
    estimating_ = true;
  }
  const size_t estimate =
      std::max<size_t>(1, (text.size() + kBytesPerTokenEstimate - 1) / kBytesPerTokenEstimate);
  return std::vector<uint32_t>(estimate, 0u);
}

}  // namespace moeserve::bench
