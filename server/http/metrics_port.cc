#include "server/http/metrics_port.h"

#include "absl/strings/str_cat.h"

namespace moeserve::server {

HttpServer::Options MetricsPortOptions() {
  return {.name = "metrics",
          .threads = 1,
          .max_body_bytes = 8192,
          .max_connections = 256,
          .inactivity_timeout = std::chrono::seconds(2)};
}

void ServeMetricsPort(HttpExchange& exchange, const std::function<std::string()>& metrics_text) {
  const HttpRequest& request = exchange.request();
  if (request.path != "/metrics") {
    exchange.Respond({.status = 404, .content_type = "text/plain", .body = "404 Not Found\n"});
    return;
  }
  exchange.set_endpoint("/metrics");
  if (request.method != "GET" && request.method != "HEAD") {
    exchange.Respond({.status = 405,
                      .content_type = "text/plain",
                      .body = "405 Method Not Allowed\n",
                      .headers = {{"Allow", "GET, HEAD"}}});
    return;
  }
  exchange.Respond({.status = 200, .content_type = kPrometheusContentType, .body = metrics_text()});
}

}  // namespace moeserve::server
