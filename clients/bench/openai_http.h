// The unary HTTP calls moeserve-bench makes around a run against an OpenAI-compatible server
// (libcurl's easy interface, one call at a time, on the calling thread): waiting for
// GET {base}/v1/models to answer and taking the model from it, and counting text prompts
// with the server's POST {base}/tokenize.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::bench {

// Once per process, before any libcurl handle: curl_global_init.
void InitCurlOnce();

struct HttpResponse {
  long status = 0;
  std::string body;
};

// GET `url`, or POST `post_body` as application/json when non-null. A non-empty `api_key`
// goes in `Authorization: Bearer KEY`. An error only when no response came (with what
// failed); any HTTP status is a response.
absl::StatusOr<HttpResponse> HttpFetch(const std::string& url, const std::string* post_body,
                                       const std::string& api_key, double timeout_s);

// "http://host:8000/" and "http://host:8000/v1" -> "http://host:8000"; InvalidArgument unless
// the URL is http:// or https://.
absl::StatusOr<std::string> NormalizeBaseUrl(const std::string& url);

struct OpenAiModelInfo {
  std::string id;             // the model name to send
  int64_t max_model_len = 0;  // vLLM's max_model_len or llama.cpp's meta.n_ctx_train; 0 unknown
};

// The entry of a /v1/models body named `wanted`, or the first when `wanted` is empty.
absl::StatusOr<OpenAiModelInfo> ParseModelList(const std::string& body, const std::string& wanted);

// Polls GET {base_url}/v1/models until it answers 200 with a model list (llama.cpp answers 503
// while loading), then returns the model; DeadlineExceeded with the last answer after
// `timeout_s`.
absl::StatusOr<OpenAiModelInfo> WaitForOpenAiModel(const std::string& base_url,
                                                   const std::string& api_key,
                                                   const std::string& wanted, double timeout_s);

// Counts text with the server's tokenizer: POST {base_url}/tokenize (vLLM and llama.cpp both
// have it, under different field names; both sets are sent). A server without it gets an
// estimate of 4 bytes per token, with one warning on stderr: lengths then only approximate the
// ShareGPT filter, while the report's prompt lengths still come from the server's usage.
class OpenAiTokenizer {
 public:
  OpenAiTokenizer(std::string base_url, std::string api_key, std::string model);

  // The token ids, or as many placeholder ids as the estimate.
  absl::StatusOr<std::vector<uint32_t>> Tokenize(const std::string& text, bool add_special_tokens);

 private:
  const std::string base_url_;
  const std::string api_key_;
  const std::string model_;
  bool estimating_ = false;
};

}  // namespace moeserve::bench
