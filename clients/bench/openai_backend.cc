#include "clients/bench/openai_backend.h"

#include <sys/resource.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "clients/bench/openai_http.h"
#include "clients/bench/openai_stream.h"

namespace moeserve::bench {
namespace {

// How long the transfer thread sleeps in curl_multi_poll when nothing happens; a wakeup (a new
// call, a cancel) ends the sleep at once.
constexpr int kPollTimeoutMs = 100;

// The status code name of a transfer that did not end with the whole body.
std::string TransportCode(CURLcode code) {
  switch (code) {
    case CURLE_OK:
      return "";
    case CURLE_OPERATION_TIMEDOUT:
      return "DEADLINE_EXCEEDED";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
      return "UNAVAILABLE";
    default:
      return "TRANSPORT_ERROR";
  }
}

// Each HTTP/1.1 stream holds a socket: lift the soft open-file limit (often 1024) to the hard.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

// One streamed request. Start/Cancel come from the runner; Begin, OnWrite and Complete run on
// the backend's transfer thread, so the reader and the easy handle need no lock.
class OpenAiCall final : public BenchCall {
 public:
  OpenAiCall(OpenAiBackend* backend, absl::StatusOr<std::string> body, RequestRecord* record,
             Clock::time_point run_start, BenchBackend::DoneCallback on_done)
      : backend_(backend),
        body_(std::move(body)),
        record_(record),
        run_start_(run_start),
        on_done_(std::move(on_done)) {}

  ~OpenAiCall() override {
    if (headers_ != nullptr) curl_slist_free_all(headers_);
    if (easy_ != nullptr) curl_easy_cleanup(easy_);
  }

  void Start() override {
    start_ = Clock::now();
    record_->start_time = std::chrono::duration<double>(start_ - run_start_).count();
    reader_.emplace(record_, start_, run_start_);
    if (!body_.ok()) {  // a prompt this endpoint cannot carry: fails without leaving
      record_->success = false;
      record_->status_code = "INVALID_ARGUMENT";
      record_->error = std::string(body_.status().message());
      on_done_(this);
      return;
    }
    backend_->Submit(this);
  }

  void Cancel() override {
    cancel_ = true;
    backend_->WakeForCancel();
  }

  bool cancel_requested() const { return cancel_; }
  CURL* easy() const { return easy_; }

  // Adds the transfer to `multi`; false (the call then finished) when it could not start.
  bool Begin(CURLM* multi) {
    if (cancel_) {
      Complete(CURLE_OK, /*cancelled=*/true);
      return false;
    }
    easy_ = curl_easy_init();
    if (easy_ == nullptr) {
      Complete(CURLE_FAILED_INIT, /*cancelled=*/false);
      return false;
    }
    const OpenAiBackendOptions& o = backend_->options();
    url_ = absl::StrCat(o.base_url, OpenAiPath(o.request.endpoint));
    for (const std::string& header :
         {std::string("Content-Type: application/json"), std::string("Accept: text/event-stream"),
          std::string("Expect:"),  // no 100-continue round trip before a large prompt
          absl::StrCat("X-Request-Id: ", record_->request_id),
          o.api_key.empty() ? std::string() : absl::StrCat("Authorization: Bearer ", o.api_key)}) {
      if (!header.empty()) headers_ = curl_slist_append(headers_, header.c_str());
    }
    curl_easy_setopt(easy_, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, body_->c_str());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_->size()));
    curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &OpenAiCall::WriteCallback);
    curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(easy_, CURLOPT_PRIVATE, this);
    curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
    if (o.timeout_s) {
      curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(*o.timeout_s * 1000.0));
    }
    if (curl_multi_add_handle(multi, easy_) != CURLM_OK) {
      Complete(CURLE_FAILED_INIT, /*cancelled=*/false);
      return false;
    }
    return true;
  }

  // The transfer ended (its handle is out of the multi): fill in the outcome, then tell the
  // runner, as the last act.
  void Complete(CURLcode result, bool cancelled) {
    long status = 0;
    if (easy_ != nullptr) curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
    std::string code = TransportCode(result);
    std::string message;
    if (cancelled) {
      code = "CANCELLED";
      message = "cancelled by the client";
    } else if (!code.empty()) {
      message = absl::StrCat(url_, ": ", error_[0] != '\0' ? error_ : curl_easy_strerror(result));
    }
    reader_->Finish(status, code, message, Clock::now());
    // The runner keeps its calls until it ends; their curl state need not wait that long.
    if (easy_ != nullptr) curl_easy_cleanup(std::exchange(easy_, nullptr));
    if (headers_ != nullptr) curl_slist_free_all(std::exchange(headers_, nullptr));
    on_done_(this);
  }

 private:
  static size_t WriteCallback(char* data, size_t size, size_t count, void* user) {
    auto* call = static_cast<OpenAiCall*>(user);
    const Clock::time_point now = Clock::now();
    long status = 0;
    curl_easy_getinfo(call->easy_, CURLINFO_RESPONSE_CODE, &status);
    // Anything but size*count aborts the transfer (CURLE_WRITE_ERROR): the reader has failed
    // the request and the rest of the stream would change nothing.
    return call->reader_->OnBody(status, std::string_view(data, size * count), now) ? size * count
                                                                                    : 0;
  }

  OpenAiBackend* const backend_;
  const absl::StatusOr<std::string> body_;
  RequestRecord* const record_;
  const Clock::time_point run_start_;
  const BenchBackend::DoneCallback on_done_;
  std::atomic<bool> cancel_{false};
  Clock::time_point start_;
  std::optional<OpenAiStreamReader> reader_;
  std::string url_;
  CURL* easy_ = nullptr;
  curl_slist* headers_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
};

OpenAiBackend::OpenAiBackend(OpenAiBackendOptions options)
    : options_(std::move(options)), multi_((InitCurlOnce(), curl_multi_init())) {
  RaiseOpenFileLimit();
  thread_ = std::thread([this] { TransferLoop(); });
}

OpenAiBackend::~OpenAiBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  thread_.join();
  curl_multi_cleanup(multi_);
}

std::unique_ptr<BenchCall> OpenAiBackend::NewCall(const BenchPrompt& prompt, RequestRecord* record,
                                                  Clock::time_point run_start,
                                                  DoneCallback on_done) {
  return std::make_unique<OpenAiCall>(this, BuildOpenAiBody(prompt, options_.request), record,
                                      run_start, std::move(on_done));
}

void OpenAiBackend::Submit(OpenAiCall* call) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    submitted_.push_back(call);
  }
  curl_multi_wakeup(multi_);
}

void OpenAiBackend::WakeForCancel() {
  cancel_requested_ = true;
  curl_multi_wakeup(multi_);
}

void OpenAiBackend::EndCancelled() {
  for (auto it = active_.begin(); it != active_.end();) {
    OpenAiCall* call = *it;
    if (!call->cancel_requested()) {
      ++it;
      continue;
    }
    it = active_.erase(it);
    curl_multi_remove_handle(multi_, call->easy());
    call->Complete(CURLE_OK, /*cancelled=*/true);
  }
}

void OpenAiBackend::TransferLoop() {
  while (true) {
    std::vector<OpenAiCall*> submitted;
    bool stopping = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      submitted.swap(submitted_);
      stopping = stopping_;
    }
    for (OpenAiCall* call : submitted) {
      if (call->Begin(multi_)) active_.insert(call);
    }
    if (stopping) {  // the runner has drained; anything left is cancelled
      for (OpenAiCall* call : active_) call->Cancel();
      cancel_requested_ = true;
    }
    if (cancel_requested_.exchange(false)) EndCancelled();
    if (stopping) return;

    int running = 0;
    curl_multi_perform(multi_, &running);
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      CURL* easy = message->easy_handle;
      const CURLcode result = message->data.result;
      OpenAiCall* call = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &call);
      curl_multi_remove_handle(multi_, easy);
      active_.erase(call);
      call->Complete(result, /*cancelled=*/false);
    }
    curl_multi_poll(multi_, nullptr, 0, kPollTimeoutMs, nullptr);
  }
}

}  // namespace moeserve::bench
