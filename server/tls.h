// Transport security for the gRPC and HTTP ports: plaintext by default (loopback, or behind a proxy
// that terminates TLS), TLS with `--tls-cert`/`--tls-key`, and mutual TLS when `--tls-client-ca` is
// given too (clients must present a certificate signed by that CA). main.cc builds the
// credentials before listening so an unreadable or mismatched file is a startup error naming
// the flag and the path.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace moeserve::server {

struct TlsFiles {
  std::string cert_chain;   // --tls-cert: PEM certificate chain of the server
  std::string private_key;  // --tls-key: PEM private key of that certificate
  std::string client_ca;    // --tls-client-ca: PEM CA bundle; non-empty = require client certs
};

// The files' PEM text (each must be a regular file of at most 1 MiB holding a PEM block);
// all empty when no file is named. The HTTP port uses the same text (server/http).
struct TlsPem {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;
};
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files);
// Insecure credentials when `pem` is empty; TLS (or mTLS) credentials otherwise.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsPem& pem);

// Insecure credentials when no file is named; TLS (or mTLS) credentials otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files);

}  // namespace moeserve::server
