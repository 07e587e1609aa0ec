// A blocking HTTP GET for tests (the server's /metrics, Prometheus's HTTP API) and a lookup of
// one sample in Prometheus text exposition format.
//
// Requests are HTTP/1.0 so servers answer with a plain body that ends at close (Go's net/http
// never chunk-encodes for 1.0 clients). Loopback only; no TLS, no redirects.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace moeserve::testing {

struct HttpResponse {
  int status = 0;  // 0 when the request failed (connection refused, timeout, garbage)
  std::string headers;
  std::string body;
};

// GET http://127.0.0.1:port`target` (target = path and query, already percent-encoded).
inline HttpResponse HttpGet(int port, const std::string& target,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  HttpResponse response;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return response;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string raw;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request =
        "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      char buffer[8192];
      while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{.fd = fd, .events = POLLIN};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
          raw.clear();  // timed out: report failure rather than a truncated body
          break;
        }
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        raw.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.") || end == std::string::npos) return response;
  response.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  response.headers = raw.substr(0, end);
  response.body = raw.substr(end + 4);
  return response;
}

// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay as they are).
inline std::string UrlEncode(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The value of the first sample named `name` whose labels include every `labels` pair, from
// Prometheus text format as PrometheusMetrics::Serialize writes it (label values without
// escaped quotes or commas). nullopt when there is none.
inline std::optional<double> MetricValue(const std::string& text, const std::string& name,
                                         const std::map<std::string, std::string>& labels = {}) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos || line.compare(0, name_end, name) != 0 ||
        name.size() != name_end) {
      continue;
    }
    const size_t value_start = line.rfind(' ');
    const std::string label_text = line.substr(name_end, value_start - name_end);
    bool match = true;
    for (const auto& [key, value] : labels) {
      const std::string pair = key + "=\"" + value + "\"";
      const size_t at = label_text.find(pair);
      // The pair must start right after '{' or ',' so "layer" does not match "num_layer".
      if (at == std::string::npos || (label_text[at - 1] != '{' && label_text[at - 1] != ',')) {
        match = false;
        break;
      }
    }
    if (match) return std::stod(line.substr(value_start + 1));
  }
  return std::nullopt;
}

}  // namespace moeserve::testing
