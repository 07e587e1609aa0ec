#include "server/metrics_http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moeserve::server {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr int kListenBacklog = 64;
constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string ErrnoText(int err) { return std::string(std::strerror(err)); }

// Debian's Abseil keeps absl::string_view distinct from std::string_view (build-notes §5.5).
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

void CloseFd(int fd) {
  if (fd >= 0) ::close(fd);
}

std::string Response(std::string_view status, std::string_view content_type,
                     const std::string& body, bool include_body,
                     std::string_view extra_headers = "") {
  std::string out =
      absl::StrCat("HTTP/1.1 ", Absl(status), "\r\nContent-Type: ", Absl(content_type),
                   "\r\nContent-Length: ", body.size(), "\r\n", Absl(extra_headers),
                   "Connection: close\r\n\r\n");
  if (include_body) out += body;
  return out;
}

std::string PlainResponse(std::string_view status, bool include_body,
                          std::string_view extra_headers = "") {
  return Response(status, "text/plain; charset=utf-8", absl::StrCat(Absl(status), "\n"),
                  include_body, extra_headers);
}

// Where the request headers end (index past the blank line), or npos while incomplete. Bare
// LF line endings are accepted, as most servers do.
size_t HeaderEnd(const std::string& data) {
  const size_t crlf = data.find("\r\n\r\n");
  const size_t lf = data.find("\n\n");
  if (crlf == std::string::npos && lf == std::string::npos) return std::string::npos;
  if (crlf == std::string::npos) return lf + 2;
  if (lf == std::string::npos) return crlf + 4;
  return std::min(crlf + 4, lf + 2);
}

void DiscardPendingInput(int fd) {
  char buffer[4096];
  for (size_t discarded = 0; discarded < (1u << 20);) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n <= 0) return;
    discarded += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> body) {
  return Start(host, port, std::move(body), Limits{});
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> body, const Limits& limits) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port must be in [0, 65535], got ", port));
  }
  if (!body) return absl::InvalidArgumentError("metrics body callback is empty");
  const std::string where = absl::StrCat(host, ":", port);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const std::string service = std::to_string(port);
  if (int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &addresses);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve metrics address ", where, ": ", ::gai_strerror(rc)));
  }
  int listen_fd = -1;
  int last_errno = 0;
  for (addrinfo* a = addresses; a != nullptr; a = a->ai_next) {
    const int fd =
        ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, kListenBacklog) == 0) {
      listen_fd = fd;
      break;
    }
    last_errno = errno;
    ::close(fd);
  }
  ::freeaddrinfo(addresses);
  if (listen_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on metrics address ", where, ": ", ErrnoText(last_errno)));
  }

  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    const int err = errno;
    ::close(listen_fd);
    return absl::InternalError(absl::StrCat("getsockname on metrics socket: ", ErrnoText(err)));
  }
  int bound_port = 0;
  if (bound.ss_family == AF_INET) {
    bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  } else if (bound.ss_family == AF_INET6) {
    bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  }

  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(listen_fd);
    return absl::InternalError(absl::StrCat("pipe for the metrics server: ", ErrnoText(err)));
  }
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(listen_fd, wake[0], wake[1], bound_port, std::move(body), limits));
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                                     std::function<std::string()> body, const Limits& limits)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port),
      body_(std::move(body)),
      limits_(limits) {
  thread_ = std::thread([this] { Run(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  stopping_.store(true);
  const char byte = 0;
  // The pipe is empty until now, so this cannot block or fail for lack of room.
  [[maybe_unused]] ssize_t n = ::write(wake_write_fd_, &byte, 1);
  if (thread_.joinable()) thread_.join();
  CloseFd(listen_fd_);
  CloseFd(wake_read_fd_);
  CloseFd(wake_write_fd_);
}

// One client connection: its request until the headers are complete, then its response until
// sent. Each phase has its own deadline; the loop below serves every connection at once.
struct MetricsHttpServer::Connection {
  int fd = -1;
  std::string request;
  std::string response;  // non-empty once the request is answered
  size_t sent = 0;
  SteadyClock::time_point deadline;
};

void MetricsHttpServer::Run() {
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  while (!stopping_.load()) {
    const auto now = SteadyClock::now();
    // Expired connections: a request not complete in time gets a best-effort 408; a response
    // not taken in time is dropped.
    for (Connection& c : connections) {
      if (now < c.deadline) continue;
      if (c.response.empty()) {
        const std::string timeout = PlainResponse("408 Request Timeout", true);
        [[maybe_unused]] ssize_t n =
            ::send(c.fd, timeout.data(), timeout.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      Close(c);
    }
    std::erase_if(connections, [](const Connection& c) { return c.fd < 0; });

    fds.clear();
    fds.push_back({.fd = wake_read_fd_, .events = POLLIN});
    fds.push_back({.fd = listen_fd_, .events = POLLIN});
    auto next_deadline = SteadyClock::time_point::max();
    for (const Connection& c : connections) {
      fds.push_back(
          {.fd = c.fd, .events = static_cast<short>(c.response.empty() ? POLLIN : POLLOUT)});
      next_deadline = std::min(next_deadline, c.deadline);
    }
    int timeout_ms = -1;
    if (next_deadline != SteadyClock::time_point::max()) {
      timeout_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(next_deadline - now).count(), 0, 1 << 30));
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      return;  // unrecoverable (EFAULT/EINVAL/ENOMEM): nothing sensible left to do
    }
    if (fds[0].revents != 0) break;
    for (size_t i = 0; i < connections.size(); ++i) {
      if (fds[i + 2].revents == 0) continue;
      if (connections[i].response.empty()) {
        Read(connections[i]);
      } else {
        Write(connections[i]);
      }
    }
    std::erase_if(connections, [](const Connection& c) { return c.fd < 0; });
    if (fds[1].revents != 0) Accept(connections);
  }
  for (Connection& c : connections) Close(c);
}

void MetricsHttpServer::Accept(std::vector<Connection>& connections) {
  // Every pending connection (the socket is non-blocking); beyond the cap, shed at once.
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR) continue;  // also the accept guard's "shed, try the next one"
      return;                        // EAGAIN: none left; anything else: try at the next poll
    }
    if (connections.size() >= limits_.max_connections) {
      ::close(fd);
      continue;
    }
    connections.push_back({.fd = fd, .deadline = SteadyClock::now() + limits_.request_timeout});
  }
}

void MetricsHttpServer::Read(Connection& c) {
  char buffer[4096];
  while (true) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      c.request.append(buffer, static_cast<size_t>(n));
      if (c.request.size() > limits_.max_request_bytes ||
          HeaderEnd(c.request) != std::string::npos) {
        return Respond(c);
      }
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      return Close(c);  // closed before a full request, or broken
    }
  }
}

void MetricsHttpServer::Respond(Connection& c) {
  c.response = Answer(c.request);
  c.sent = 0;
  c.deadline = SteadyClock::now() + limits_.response_timeout;
  Write(c);
}

void MetricsHttpServer::Write(Connection& c) {
  while (c.sent < c.response.size()) {
    const ssize_t n =
        ::send(c.fd, c.response.data() + c.sent, c.response.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;  // the rest when the socket is writable again
    } else {
      return Close(c);  // the client went away (EPIPE, ECONNRESET)
    }
  }
  // Half-close, then discard what the client sent that we did not read (an oversized request,
  // a body): closing with unread input makes the kernel send RST, which can destroy the
  // response before the client has read it.
  ::shutdown(c.fd, SHUT_WR);
  DiscardPendingInput(c.fd);
  Close(c);
}

void MetricsHttpServer::Close(Connection& c) {
  CloseFd(c.fd);
  c.fd = -1;
}

std::string MetricsHttpServer::Answer(const std::string& request) const {
  const size_t header_end = HeaderEnd(request);
  if (header_end == std::string::npos || header_end > limits_.max_request_bytes) {
    return PlainResponse("431 Request Header Fields Too Large", true);
  }
  // Request line: METHOD SP request-target SP HTTP-version.
  std::string_view line(request.data(), request.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos ||
      !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    return PlainResponse("400 Bad Request", true);
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));  // Prometheus may add params; we have none
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    return PlainResponse("405 Method Not Allowed", true, "Allow: GET, HEAD\r\n");
  }
  if (target != "/metrics") return PlainResponse("404 Not Found", !head);
  try {
    return Response("200 OK", kMetricsContentType, body_(), !head);
  } catch (const std::exception& e) {
    return Response("500 Internal Server Error", "text/plain; charset=utf-8",
                    absl::StrCat("metrics: ", e.what(), "\n"), !head);
  }
}

}  // namespace moeserve::server
