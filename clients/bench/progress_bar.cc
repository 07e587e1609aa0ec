#include "clients/bench/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace moeserve::bench {
namespace {

std::string FormatClock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.0) return "--:--";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  if (total >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", total / 3600, total / 60 % 60, total % 60);
  }
  return absl::StrFormat("%02d:%02d", total / 60, total % 60);
}

}  // namespace

ProgressBar::ProgressBar(std::FILE* out, std::string label) : out_(out), label_(std::move(label)) {}

ProgressBar::~ProgressBar() { Finish(); }

bool ProgressBar::IsTerminal(std::FILE* file) { return file != nullptr && isatty(fileno(file)); }

void ProgressBar::Start(int64_t total, std::optional<double> duration_s) {
  total_ = total;
  duration_s_ = duration_s;
  done_ = 0;
  failed_ = 0;
  start_ = std::chrono::steady_clock::now();
  if (out_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  ticker_ = std::thread([this] { TickerLoop(); });
}

void ProgressBar::OnRequestDone(bool success) {
  done_.fetch_add(1, std::memory_order_relaxed);
  if (!success) failed_.fetch_add(1, std::memory_order_relaxed);
}

void ProgressBar::Finish() {
  if (!ticker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  ticker_.join();
  Draw(/*final_line=*/true);
}

void ProgressBar::TickerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; })) {
    Draw(/*final_line=*/false);
  }
}

void ProgressBar::Draw(bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string line =
      Render(label_, done_.load(), failed_.load(), total_, duration_s_, elapsed);
  // \r redraws in place; \x1b[K clears what a longer previous line left behind.
  std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final_line ? "\n" : "");
  std::fflush(out_);
}

std::string ProgressBar::Render(const std::string& label, int64_t done, int64_t failed,
                                int64_t total, std::optional<double> duration_s, double elapsed_s,
                                int width) {
  double fraction = 0.0;
  double eta_s = NAN;
  const double rate = elapsed_s > 0.0 ? static_cast<double>(done) / elapsed_s : 0.0;
  std::string count;
  if (total >= 0) {
    fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
    if (rate > 0.0) eta_s = static_cast<double>(total - done) / rate;
    count = absl::StrFormat("%d/%d", done, total);
  } else {
    const double duration = duration_s.value_or(0.0);
    fraction = duration > 0.0 ? elapsed_s / duration : 0.0;
    eta_s = std::max(duration - elapsed_s, 0.0);
    count = absl::StrFormat("%d done", done);
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width);
  std::string bar(filled, '#');
  bar.append(width - filled, '.');
  std::string line = absl::StrFormat("%s%s[%s] %3.0f%% %s", label, label.empty() ? "" : " ", bar,
                                     fraction * 100.0, count);
  if (failed > 0) absl::StrAppendFormat(&line, " (%d failed)", failed);
  absl::StrAppendFormat(&line, "  %.2f req/s  elapsed %s  ETA %s", rate, FormatClock(elapsed_s),
                        FormatClock(eta_s));
  return line;
}

}  // namespace moeserve::bench
