#include "server/warmup.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "absl/strings/str_cat.h"

namespace moeserve::server {
namespace {

constexpr char kWarmupText[] = "The quick brown fox jumps over the lazy dog.";
constexpr int64_t kWarmupTokens = 4;

// Waits for the warmup request's final event.
class WaitingSink : public engine::TokenSink {
 public:
  void OnEvent(engine::TokenEvent event) override {
    if (!event.finish) return;
    std::lock_guard lock(mu_);
    final_ = std::move(event);
    done_.notify_all();
  }
  engine::TokenEvent Wait() {
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return final_.has_value(); });
    return *final_;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::optional<engine::TokenEvent> final_;
};

}  // namespace

absl::Status WarmUp(engine::Engine& engine, const engine::Tokenizer& tokenizer,
                    int64_t max_model_len) {
  engine::GenerateRequest request;
  request.request_id = "moeserve-warmup";
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(kWarmupText, true);
  if (ids.ok()) request.prompt_token_ids = *std::move(ids);
  if (request.prompt_token_ids.empty()) request.prompt_token_ids = {0};
  // Leave room for at least one generated token in a tiny context.
  const auto prompt_limit = static_cast<size_t>(std::max<int64_t>(1, max_model_len - 1));
  if (request.prompt_token_ids.size() > prompt_limit) request.prompt_token_ids.resize(prompt_limit);
  request.sampling.temperature = 0.0f;
  const int64_t room = max_model_len - static_cast<int64_t>(request.prompt_token_ids.size());
  request.stop.max_new_tokens = std::max<int64_t>(1, std::min(kWarmupTokens, room));
  request.stop.ignore_eos = true;

  // The sink outlives the engine's use of it: Wait returns only after the final event.
  WaitingSink sink;
  absl::StatusOr<engine::RequestHandle> handle = engine.Submit(std::move(request), &sink);
  if (!handle.ok()) return handle.status();
  const engine::TokenEvent final_event = sink.Wait();
  handle->Detach();
  if (*final_event.finish == engine::FinishReason::kError) {
    return absl::InternalError(
        absl::StrCat("warmup generation failed: ", final_event.error_message));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::server
