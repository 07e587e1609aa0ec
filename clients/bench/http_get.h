// A minimal HTTP/1.0 GET over a TCP socket, enough to read a Prometheus /metrics page.
//
// Used by server_metrics.cc for --scrape-metrics; a dependency such as libcurl would buy
// nothing here: one plain-text GET on a trusted network, with a timeout, no TLS, no redirects.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace moeserve::bench {

struct HttpUrl {
  std::string host;
  std::string port;  // "80" when the URL has none
  std::string path;  // starts with '/'
};

// Accepts "http://host:port/path", "host:port/path" and "host:port" (path "/metrics").
absl::StatusOr<HttpUrl> ParseHttpUrl(const std::string& url);

// The body of a 200 response (chunked transfer decoded), or an error saying what failed.
absl::StatusOr<std::string> HttpGet(const std::string& url, double timeout_s = 5.0);

}  // namespace moeserve::bench
