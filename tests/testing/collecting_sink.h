// A TokenSink for tests: keeps every event and lets the test wait for the final one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "engine/request.h"

namespace moeserve::testing {

class CollectingSink : public engine::TokenSink {
 public:
  void OnEvent(engine::TokenEvent event) override {
    std::lock_guard lock(mu_);
    if (event.finish) ++num_finished_;
    events_.push_back(std::move(event));
    cv_.notify_all();
  }

  // Waits until a final event arrived; false on timeout.
  bool WaitFinished(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return num_finished_ > 0; });
  }

  std::vector<engine::TokenEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  int num_finished() const {
    std::lock_guard lock(mu_);
    return num_finished_;
  }
  std::vector<int32_t> token_ids() const {
    std::lock_guard lock(mu_);
    std::vector<int32_t> ids;
    for (const auto& e : events_) {
      for (const auto& t : e.tokens) ids.push_back(t.token_id);
    }
    return ids;
  }
  std::string text() const {
    std::lock_guard lock(mu_);
    std::string text;
    for (const auto& e : events_) text += e.text_delta;
    return text;
  }
  engine::TokenEvent last() const {
    std::lock_guard lock(mu_);
    return events_.back();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<engine::TokenEvent> events_;
  int num_finished_ = 0;
};

}  // namespace moeserve::testing
