// A minimal HTTP/1.1 server for Prometheus scrapes: GET (or HEAD) /metrics answers with the
// text that `body` returns, as text/plain; version=0.0.4. Every other path is 404.
//
// main.cc starts it with PrometheusMetrics::Serialize as the body. It replaces prometheus-cpp's
// civetweb Exposer, which aborts in any process that links cuBLASLt (build-notes.md §5,
// pitfall 1). One thread serves every connection at once from a poll loop: a slow, silent or
// malicious client holds only its own connection, which is closed when its request is not
// complete within the request timeout (issue 21, row 4), so a scrape is never queued behind it.
// Connections beyond a cap are closed at once; requests have a size limit; responses close the
// connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace moeserve::server {

class MetricsHttpServer {
 public:
  struct Limits {
    // From accept until the request headers are complete.
    std::chrono::milliseconds request_timeout{1000};
    // For writing the whole response.
    std::chrono::milliseconds response_timeout{10000};
    // Request line plus headers; larger requests get 431.
    size_t max_request_bytes = 8192;
    // Connections served at once; more are closed as soon as they are accepted.
    size_t max_connections = 256;
  };

  // Binds host:port (port 0 = ephemeral; host may be a name, IPv4 or IPv6 literal) and starts
  // the serving thread. `body` runs on that thread for each /metrics request.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> body);
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  std::function<std::string()> body,
                                                                  const Limits& limits);

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  // Stops the thread (interrupting a connection in progress) and closes the socket.
  ~MetricsHttpServer();

  // The bound port (the ephemeral one when started with 0).
  int port() const { return port_; }

 private:
  MetricsHttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                    std::function<std::string()> body, const Limits& limits);
  struct Connection;
  void Run();
  void Accept(std::vector<Connection>& connections);
  void Read(Connection& c);
  void Respond(Connection& c);
  void Write(Connection& c);
  static void Close(Connection& c);
  // The whole response to one request (status line, headers, body).
  std::string Answer(const std::string& request) const;

  const int listen_fd_;
  const int wake_read_fd_;  // readable once the destructor asks the thread to stop
  const int wake_write_fd_;
  const int port_;
  const std::function<std::string()> body_;
  const Limits limits_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace moeserve::server
