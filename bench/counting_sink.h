// A TokenSink for the engine benchmarks: counts generated tokens and finished requests (and
// those the engine ended with an error, which a benchmark must not report as a measurement), and
// lets the benchmark wait until a number of requests have finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "engine/request.h"

namespace moeserve::bench {

class CountingSink : public engine::TokenSink {
 public:
  void OnEvent(engine::TokenEvent event) override {
    std::lock_guard lock(mu_);
    tokens_ += static_cast<int64_t>(event.tokens.size());
    if (event.finish) {
      ++finished_;
      if (*event.finish == engine::FinishReason::kError) {
        ++errors_;
        if (first_error_.empty()) first_error_ = event.error_message;
      }
      cv_.notify_all();
    }
  }
  void WaitFor(int64_t count) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return finished_ >= count; });
  }
  int64_t tokens() {
    std::lock_guard lock(mu_);
    return tokens_;
  }
  // Requests the engine ended with FinishReason::kError, and the first one's message.
  int64_t errors() {
    std::lock_guard lock(mu_);
    return errors_;
  }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t finished_ = 0;
  int64_t tokens_ = 0;
  int64_t errors_ = 0;
  std::string first_error_;
};

}  // namespace moeserve::bench
