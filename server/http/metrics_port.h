// The `--metrics-port` server: GET (or HEAD) /metrics answers the Prometheus text exposition;
// every other path is 404. It runs on HttpServer like the OpenAI port (which serves /metrics
// too), with limits sized for scrapers: one polling thread, 256 connections, requests without
// bodies, and idle or stalled connections closed after a few seconds, so a slow or silent
// client holds only its own socket and a scrape is never queued behind it (issue 21, row 4).
//
// main.cc starts it before the model loads with PrometheusMetrics::Serialize as the body.
#pragma once

#include <functional>
#include <string>

#include "server/http/http_server.h"

namespace moeserve::server {

inline constexpr char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

HttpServer::Options MetricsPortOptions();

// Answers one request of the metrics port with `metrics_text()` for /metrics.
void ServeMetricsPort(HttpExchange& exchange, const std::function<std::string()>& metrics_text);

}  // namespace moeserve::server
