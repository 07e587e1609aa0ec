// A bound, listening TCP socket for the HTTP front ends (the OpenAI API port and the metrics
// port), made before the model loads so that a port in use is a startup error at once.
//
// main.cc binds both through HttpServer::Start, which hands the socket to libmicrohttpd.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace moeserve::server {

struct ListenSocket {
  int fd = -1;   // non-blocking, close-on-exec; owned by the caller
  int port = 0;  // the bound port (the ephemeral one when asked for 0)
  bool ipv6 = false;
};

// Binds host:port (port 0 = ephemeral; host a name, IPv4 or IPv6 literal) and listens. The
// error names the address and the reason ("Address already in use").
absl::StatusOr<ListenSocket> BindListenSocket(const std::string& host, int port);

}  // namespace moeserve::server
