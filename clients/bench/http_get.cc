#include "clients/bench/http_get.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moeserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Closes the socket on every return path.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on `fd` until `deadline`.
absl::Status WaitFor(int fd, short events, Clock::time_point deadline, const std::string& what) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError(absl::StrCat("timed out ", what));
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready > 0) return absl::OkStatus();
    if (ready < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
    }
  }
}

absl::StatusOr<std::string> DecodeChunked(const std::string& body) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t line_end = body.find("\r\n", pos);
    if (line_end == std::string::npos) return absl::DataLossError("truncated chunked body");
    size_t size = 0;
    std::string size_text = body.substr(pos, line_end - pos);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(size_text), &size)) {
      return absl::DataLossError("bad chunk size in chunked body");
    }
    pos = line_end + 2;
    if (size == 0) return out;
    if (pos + size > body.size()) return absl::DataLossError("truncated chunk");
    out.append(body, pos, size);
    pos += size + 2;
  }
}

}  // namespace

absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url) {
  std::string rest = url;
  if (absl::StartsWith(rest, "http://")) {
    rest = rest.substr(7);
  } else if (rest.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("only http:// URLs are supported, got ", url));
  }
  HttpUrl parsed;
  const size_t slash = rest.find('/');
  parsed.path = slash == std::string::npos ? "/metrics" : rest.substr(slash);
  const std::string authority = rest.substr(0, slash);
  const size_t colon = authority.rfind(':');
  if (colon == std::string::npos || authority.back() == ']') {
    parsed.host = authority;
    parsed.port = "80";
  } else {
    parsed.host = authority.substr(0, colon);
    parsed.port = authority.substr(colon + 1);
  }
  if (parsed.host.size() >= 2 && parsed.host.front() == '[' && parsed.host.back() == ']') {
    parsed.host = parsed.host.substr(1, parsed.host.size() - 2);  // [::1]
  }
  if (parsed.host.empty() || parsed.port.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse URL ", url));
  }
  return parsed;
}

absl::StatusOr<std::string> HttpGet(const std::string& url, double timeout_s) {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  const Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                        std::chrono::duration<double>(timeout_s));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (const int rc = getaddrinfo(parsed->host.c_str(), parsed->port.c_str(), &hints, &addresses);
      rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", parsed->host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  int connected_fd = -1;
  for (addrinfo* a = addresses; a != nullptr && connected_fd < 0; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
      absl::Status ready = WaitFor(fd, POLLOUT, deadline, "connecting");
      int error = 0;
      socklen_t length = sizeof error;
      if (ready.ok() && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0) {
        connected_fd = fd;
        break;
      }
      last_error = ready.ok() ? std::strerror(error) : std::string(ready.message());
    } else {
      last_error = std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(addresses);
  if (connected_fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", parsed->host, ":", parsed->port, ": ", last_error));
  }
  Socket socket_fd(connected_fd);

  const std::string request =
      absl::StrCat("GET ", parsed->path, " HTTP/1.0\r\nHost: ", parsed->host, ":", parsed->port,
                   "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    if (absl::Status s = WaitFor(socket_fd.fd(), POLLOUT, deadline, "sending"); !s.ok()) return s;
    const ssize_t n =
        send(socket_fd.fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[16384];
  while (true) {
    if (absl::Status s = WaitFor(socket_fd.fd(), POLLIN, deadline, "reading"); !s.ok()) return s;
    const ssize_t n = recv(socket_fd.fd(), buffer, sizeof buffer, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    }
    response.append(buffer, static_cast<size_t>(n));
  }

  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::DataLossError("no HTTP header in the response");
  const std::string header = response.substr(0, header_end);
  const size_t first_space = header.find(' ');
  if (!absl::StartsWith(header, "HTTP/") || first_space == std::string::npos ||
      header.compare(first_space + 1, 3, "200") != 0) {
    return absl::UnavailableError(
        absl::StrCat("GET ", url, " answered '", header.substr(0, header.find("\r\n")), "'"));
  }
  std::string body = response.substr(header_end + 4);
  if (absl::StrContains(absl::AsciiStrToLower(header), "transfer-encoding: chunked")) {
    return DecodeChunked(body);
  }
  return body;
}

}  // namespace moeserve::bench
