// A TokenSink for the engine benchmarks: counts generated tokens and finished requests, and
// lets the benchmark wait until a number of requests have finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "engine/request.h"

namespace moeserve::bench {

class CountingSink : public engine::TokenSink {
 public:
  void OnEvent(engine::TokenEvent event) override {
    std::lock_guard lock(mu_);
    tokens_ += static_cast<int64_t>(event.tokens.size());
    if (event.finish) {
      ++finished_;
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

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t finished_ = 0;
  int64_t tokens_ = 0;
};

}  // namespace moeserve::bench
