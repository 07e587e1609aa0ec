// The HTTP/1.1 front end's transport, on GNU libmicrohttpd (docs/http.md says why that library):
// a listening socket, a few polling threads, TLS, timeouts and size limits, and requests handed
// to one Handler as HttpExchange objects that may be answered later from any thread.
//
// main.cc starts two: the OpenAI API port (server/http/openai_service.h routes it) and the
// metrics port (GET /metrics only). Handlers never block an HTTP thread on the engine: they
// answer at once (Respond), or keep the exchange and answer when the engine's events arrive,
// whole (Respond) or as a stream of bytes (StartStream, Write, CloseStream: Server-Sent
// Events). Until then the connection is suspended, so a thousand open streams cost a thousand
// sockets and buffers, not a thousand threads. A client that goes away is reported once
// through OnClientGone (the handler cancels its engine requests, freeing their KV blocks).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

struct MHD_Connection;
struct MHD_Daemon;

namespace moeserve::server {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;         // "GET", "POST", ...
  std::string path;           // without the query string
  std::string authorization;  // the Authorization header, "" when absent
  std::string content_type;   // the Content-Type header, "" when absent
  std::string peer;           // "address:port" of the client
  std::string body;           // at most Options::max_body_bytes
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HttpHeaders headers;
};

class HttpServer;

// One request and its answer. Thread-safe; the first answer wins, later ones are ignored.
class HttpExchange : public std::enable_shared_from_this<HttpExchange> {
 public:
  HttpExchange(HttpServer* server, MHD_Connection* connection, HttpRequest request);
  HttpExchange(const HttpExchange&) = delete;
  HttpExchange& operator=(const HttpExchange&) = delete;

  const HttpRequest& request() const { return request_; }
  // The metrics label for this request (a fixed route, never the raw path).
  void set_endpoint(std::string endpoint) { endpoint_ = std::move(endpoint); }
  const std::string& endpoint() const { return endpoint_; }

  // The whole response.
  void Respond(HttpResponse response);
  // A response whose body is written piecewise (chunked transfer encoding) until CloseStream.
  void StartStream(int status, std::string content_type, HttpHeaders headers = {});
  // Queues bytes of a started stream; false once the client has gone (stop producing).
  bool Write(std::string_view bytes);
  void CloseStream();
  // `callback` runs once, on an HTTP thread (or here, if it already happened), when the client
  // goes away before the whole response was sent.
  void OnClientGone(std::function<void()> callback);

 private:
  friend class HttpServer;
  friend struct HttpCallbacks;
  enum class State { kWaiting, kResponded, kStreaming, kQueued };

  // The HTTP thread's turn (the access handler): queues the response if there is one, else
  // suspends the connection until Respond/StartStream/Write resumes it.
  bool QueueOrSuspendOnHttpThread();
  // The content reader of a streamed response: copies what is buffered, or suspends.
  long ReadStreamOnHttpThread(char* buffer, size_t max);
  // The request is over (sent, failed or the client left); `completed` when fully sent.
  void FinishOnHttpThread(bool completed);
  // Shutdown: the client will get nothing more; resumes a suspended connection.
  void Abandon();
  // Resumes the connection if it is suspended (called without mu_).
  void ResumeIfSuspended(std::unique_lock<std::mutex>& lock);

  HttpServer* const server_;
  MHD_Connection* const connection_;
  HttpRequest request_;  // the body is set on the HTTP thread before the handler sees it
  std::string endpoint_ = "other";

  std::mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kWaiting;
  HttpResponse response_ ABSL_GUARDED_BY(mu_);  // status, type and headers of a stream too
  std::string stream_buffer_ ABSL_GUARDED_BY(mu_);
  size_t stream_offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool stream_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool suspended_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool client_gone_ ABSL_GUARDED_BY(mu_) = false;  // finished before all was sent
  std::function<void()> on_client_gone_ ABSL_GUARDED_BY(mu_);
};

class HttpServer {
 public:
  struct Tls {
    std::string cert_chain_pem;  // empty: plaintext
    std::string private_key_pem;
    std::string client_ca_pem;  // non-empty: clients must present a certificate it signed
  };
  struct Options {
    std::string name = "HTTP";  // in log lines
    int threads = 4;            // polling threads; handlers run on them
    size_t max_body_bytes = 4 << 20;
    unsigned max_connections = 4096;
    // A connection with no progress for this long is closed: an idle keep-alive, a client that
    // stopped sending its request, or one that stopped reading a response.
    std::chrono::seconds inactivity_timeout{30};
    Tls tls;
  };
  using Handler = std::function<void(std::shared_ptr<HttpExchange>)>;
  // After each answered request, with its endpoint label and status code.
  using Observer = std::function<void(const std::string& endpoint, int status)>;

  // Binds host:port (0 = ephemeral) and starts serving. `handler` runs on the HTTP threads.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& host, int port,
                                                           Options options, Handler handler,
                                                           Observer observer = {});
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Answers what is still open (streams end, waiting requests get 503) and stops.
  ~HttpServer();

  int port() const { return port_; }
  // Requests whose answer has not been fully sent.
  size_t open_exchanges() const;
  // Waits until no request is open or `deadline` passes; true if none is.
  bool WaitForOpenExchanges(std::chrono::steady_clock::time_point deadline) const;

 private:
  HttpServer(Options options, Handler handler, Observer observer, int port);
  friend class HttpExchange;
  struct Pending;
  friend struct HttpCallbacks;  // libmicrohttpd's C callbacks (http_server.cc)
  std::shared_ptr<HttpExchange> NewExchange(MHD_Connection* connection, const char* url,
                                            const char* method);
  // Whether the connection's TLS client certificate verifies against Tls::client_ca_pem.
  bool ClientCertificateVerified(MHD_Connection* connection) const;

  const Options options_;
  const Handler handler_;
  const Observer observer_;
  const int port_;
  MHD_Daemon* daemon_ = nullptr;

  mutable std::mutex mu_;
  absl::flat_hash_set<HttpExchange*> open_ ABSL_GUARDED_BY(mu_);
};

// {"error": {"message", "type", "param", "code"}}, as OpenAI's API answers errors; `param`
// (the offending field) may be empty.
HttpResponse JsonError(int status, std::string_view message, std::string_view param = "");

}  // namespace moeserve::server
