#include "server/http/openai_service.h"

#include <chrono>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/status_macros.h"
#include "server/api_key.h"
#include "server/chat_prompt.h"
#include "server/http/openai_response.h"
#include "server/logging.h"
#include "server/request_validation.h"

namespace moeserve::server {
namespace {

using Json = nlohmann::json;
namespace v1 = moeserve::v1;

// Debian's Abseil keeps absl::string_view distinct from std::string_view (build-notes §5.5).
std::string Text(absl::string_view s) { return std::string(s.data(), s.size()); }

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RandomHex() {
  std::random_device device;
  return absl::StrFormat("%08x", device());
}

HttpResponse JsonResponse(const Json& body, int status = 200) {
  return {.status = status, .content_type = "application/json", .body = DumpJson(body)};
}

HttpResponse BadRequest(const absl::Status& status) {
  return JsonError(400, Text(status.message()));
}

Json GenerationDefaultsJson(const v1::GetModelInfoResponse& info) {
  Json out = Json::object();
  if (!info.has_generation_defaults()) return out;
  const v1::GenerationDefaults& d = info.generation_defaults();
  if (d.has_temperature()) out["temperature"] = d.temperature();
  if (d.has_top_p()) out["top_p"] = d.top_p();
  if (d.has_top_k()) out["top_k"] = d.top_k();
  if (d.has_min_p()) out["min_p"] = d.min_p();
  if (d.has_repetition_penalty()) out["repetition_penalty"] = d.repetition_penalty();
  if (d.has_max_tokens()) out["max_tokens"] = d.max_tokens();
  return out;
}

}  // namespace

OpenAiService::OpenAiService(Options options)
    : options_(std::move(options)), id_prefix_(RandomHex()), created_(UnixSeconds()) {}

void OpenAiService::SetBackend(const ServingBackend* backend) { backend_.store(backend); }

void OpenAiService::StartDraining() { draining_.store(true); }

bool OpenAiService::WaitForJobs(std::chrono::steady_clock::time_point deadline) const {
  while (jobs_.size() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::string OpenAiService::NextId(std::string_view prefix) {
  return absl::StrCat(absl::string_view(prefix.data(), prefix.size()), id_prefix_,
                      next_id_.fetch_add(1));
}

bool OpenAiService::Authorized(const HttpRequest& request) const {
  if (options_.api_key.empty()) return true;
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view header = request.authorization;
  if (header.size() <= kBearer.size() || header.substr(0, kBearer.size()) != kBearer) return false;
  return ConstantTimeEquals(options_.api_key, header.substr(kBearer.size()));
}

std::optional<HttpResponse> OpenAiService::CheckModel(const std::string& model) const {
  if (model.empty() || model == options_.served_model_name) return std::nullopt;
  HttpResponse response =
      JsonError(404,
                absl::StrCat("The model `", model, "` does not exist; this server serves `",
                             options_.served_model_name, "`"),
                "model");
  return response;
}

void OpenAiService::Handle(std::shared_ptr<HttpExchange> exchange) {
  const HttpRequest& request = exchange->request();
  struct Route {
    std::string_view path;
    std::string_view method;
    bool needs_key;
    bool needs_model;
  };
  static constexpr Route kRoutes[] = {
      {"/v1/completions", "POST", true, true}, {"/v1/chat/completions", "POST", true, true},
      {"/v1/models", "GET", true, false},      {"/tokenize", "POST", true, true},
      {"/detokenize", "POST", true, true},     {"/health", "GET", false, false},
      {"/version", "GET", false, false},       {"/metrics", "GET", false, false},
  };
  const Route* route = nullptr;
  for (const Route& r : kRoutes) {
    if (request.path == r.path) route = &r;
  }
  if (route == nullptr) {
    exchange->Respond(JsonError(404, absl::StrCat("no route ", request.path)));
    return;
  }
  exchange->set_endpoint(std::string(route->path));
  const bool head = request.method == "HEAD" && route->method == "GET";
  if (request.method != route->method && !head) {
    HttpResponse response =
        JsonError(405, absl::StrCat(request.path, " accepts ", std::string(route->method), ", not ",
                                    request.method));
    response.headers.emplace_back("Allow", std::string(route->method));
    exchange->Respond(std::move(response));
    return;
  }
  if (route->needs_key && !Authorized(request)) {
    HttpResponse response =
        JsonError(401, request.authorization.empty()
                           ? "this server needs an API key: send 'Authorization: Bearer KEY'"
                           : "the API key is not valid");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    exchange->Respond(std::move(response));
    return;
  }
  if (route->path == "/version") {
    exchange->Respond(JsonResponse({{"version", MOESERVE_VERSION}}));
    return;
  }
  if (route->path == "/metrics") {
    exchange->Respond({.status = 200,
                       .content_type = "text/plain; version=0.0.4; charset=utf-8",
                       .body = options_.metrics_text ? options_.metrics_text() : std::string()});
    return;
  }
  const ServingBackend* backend = backend_.load();
  if (backend == nullptr || draining_.load()) {
    const char* why = backend == nullptr ? "the model is still loading; retry once /health is 200"
                                         : "the server is shutting down";
    HttpResponse response = JsonError(503, why);
    if (route->path == "/health") response = {.status = 503, .content_type = "text/plain"};
    exchange->Respond(std::move(response));
    return;
  }
  if (route->path == "/health") {
    exchange->Respond({.status = 200, .content_type = "text/plain"});
  } else if (route->path == "/v1/models") {
    exchange->Respond(Models(*backend));
  } else if (route->path == "/v1/completions") {
    Generate(exchange, OpenAiApi::kCompletions, *backend);
  } else if (route->path == "/v1/chat/completions") {
    Generate(exchange, OpenAiApi::kChat, *backend);
  } else if (route->path == "/tokenize") {
    exchange->Respond(Tokenize(request, *backend));
  } else {
    exchange->Respond(Detokenize(request, *backend));
  }
}

void OpenAiService::Generate(const std::shared_ptr<HttpExchange>& exchange, OpenAiApi api,
                             const ServingBackend& backend) {
  absl::StatusOr<OpenAiRequest> parsed = api == OpenAiApi::kChat
                                             ? ParseChatRequest(exchange->request().body)
                                             : ParseCompletionRequest(exchange->request().body);
  if (!parsed.ok()) {
    exchange->Respond(BadRequest(parsed.status()));
    return;
  }
  OpenAiRequest& request = *parsed;
  if (std::optional<HttpResponse> wrong_model = CheckModel(request.model)) {
    exchange->Respond(*std::move(wrong_model));
    return;
  }
  if (api == OpenAiApi::kChat) {
    absl::StatusOr<std::string> prompt = RenderChat(request, backend);
    if (!prompt.ok()) {
      exchange->Respond(JsonError(400, Text(prompt.status().message()), "messages"));
      return;
    }
    request.prompts[0].set_text(*std::move(prompt));
  }

  // Every prompt and choice is validated before any is submitted: all run, or none.
  const std::string id = NextId(api == OpenAiApi::kChat ? "chatcmpl-" : "cmpl-");
  std::vector<engine::GenerateRequest> requests;
  requests.reserve(request.prompts.size() * request.n);
  for (size_t p = 0; p < request.prompts.size(); ++p) {
    absl::StatusOr<engine::GenerateRequest> validated =
        ValidateGenerateRequest(request.prompts[p], *backend.tokenizer, backend.limits);
    if (!validated.ok()) {
      OpenAiFieldMessage field = ToOpenAiFieldMessage(Text(validated.status().message()), api,
                                                      request.prompts.size() > 1, p);
      exchange->Respond(JsonError(400, field.message, field.param));
      return;
    }
    for (int c = 0; c < request.n; ++c) {
      engine::GenerateRequest choice = *validated;
      const size_t index = p * request.n + c;
      choice.request_id = absl::StrCat(id, "-", index);
      // Several choices with one seed must still differ, reproducibly.
      if (choice.sampling.seed) choice.sampling.seed = *choice.sampling.seed + c;
      requests.push_back(std::move(choice));
    }
  }
  OpenAiJob::Run(exchange,
                 {.backend = &backend,
                  .registry = &jobs_,
                  .id = id,
                  .model_name = options_.served_model_name,
                  .created = UnixSeconds(),
                  .api = api,
                  .n = request.n,
                  .stream = request.stream,
                  .include_usage = request.include_usage,
                  .logprobs = request.logprobs,
                  .parse_reasoning = options_.parse_reasoning && api == OpenAiApi::kChat},
                 std::move(requests));
}

absl::StatusOr<std::string> OpenAiService::RenderChat(const OpenAiRequest& request,
                                                      const ServingBackend& backend) const {
  return RenderChatPrompt(backend.limits.chat_template, request.messages,
                          {.add_generation_prompt = request.add_generation_prompt,
                           .continue_final_message = request.continue_final_message,
                           .tools = request.tools,
                           .template_kwargs = request.chat_template_kwargs});
}

HttpResponse OpenAiService::Models(const ServingBackend& backend) const {
  const v1::GetModelInfoResponse& info = backend.model_info;
  Json model = {{"id", options_.served_model_name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "moeserve"},
                {"root", options_.served_model_name},
                {"parent", nullptr},
                {"max_model_len", info.max_context_length()},
                {"generation_defaults", GenerationDefaultsJson(info)}};
  return JsonResponse({{"object", "list"}, {"data", Json::array({model})}});
}

HttpResponse OpenAiService::Tokenize(const HttpRequest& http, const ServingBackend& backend) const {
  absl::StatusOr<Json> body = ParseJsonObject(http.body);
  if (!body.ok()) return BadRequest(body.status());
  std::string model = body->value("model", std::string());
  if (std::optional<HttpResponse> wrong_model = CheckModel(model)) return *wrong_model;
  std::string text;
  bool add_special = true;
  if (body->contains("messages")) {
    // Chat form: the prompt a chat request with these messages would run.
    absl::StatusOr<OpenAiRequest> request = ParseChatRequest(http.body);
    if (!request.ok()) return BadRequest(request.status());
    absl::StatusOr<std::string> rendered = RenderChat(*request, backend);
    if (!rendered.ok()) return JsonError(400, Text(rendered.status().message()), "messages");
    text = *std::move(rendered);
    add_special = false;
  } else {
    auto prompt = body->find("prompt");
    if (prompt == body->end() || !prompt->is_string()) {
      return JsonError(400, "prompt must be a string (or give messages)", "prompt");
    }
    text = prompt->get<std::string>();
  }
  if (auto flag = body->find("add_special_tokens"); flag != body->end() && !flag->is_null()) {
    if (!flag->is_boolean())
      return JsonError(400, "add_special_tokens must be a boolean", "add_special_tokens");
    add_special = flag->get<bool>();
  }
  v1::TokenizeRequest proto;
  proto.set_text(text);
  proto.set_add_special_tokens(add_special);
  absl::StatusOr<std::vector<int32_t>> ids = ValidateTokenizeRequest(proto, *backend.tokenizer);
  if (!ids.ok()) {
    OpenAiFieldMessage field =
        ToOpenAiFieldMessage(Text(ids.status().message()), OpenAiApi::kCompletions, false, 0);
    return JsonError(400, field.message, field.param);
  }
  return JsonResponse(
      {{"count", ids->size()}, {"max_model_len", backend.limits.max_model_len}, {"tokens", *ids}});
}

HttpResponse OpenAiService::Detokenize(const HttpRequest& http,
                                       const ServingBackend& backend) const {
  absl::StatusOr<Json> body = ParseJsonObject(http.body);
  if (!body.ok()) return BadRequest(body.status());
  std::string model = body->value("model", std::string());
  if (std::optional<HttpResponse> wrong_model = CheckModel(model)) return *wrong_model;
  auto tokens = body->find("tokens");
  if (tokens == body->end() || !tokens->is_array()) {
    return JsonError(400, "tokens must be a list of token ids", "tokens");
  }
  std::vector<int32_t> ids;
  ids.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const Json& id = (*tokens)[i];
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= backend.limits.vocab_size) {
      return JsonError(400,
                       absl::StrCat("tokens[", i, "] = ", id.dump(), " is not a token id in [0, ",
                                    backend.limits.vocab_size, ")"),
                       "tokens");
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return JsonResponse({{"prompt", backend.tokenizer->Decode(ids, /*skip_special_tokens=*/false)}});
}

}  // namespace moeserve::server
