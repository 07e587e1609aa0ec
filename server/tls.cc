#include "server/tls.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/io/bounded_file.h"

namespace moeserve::server {
namespace {

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  absl::StatusOr<std::string> read = engine::ReadRegularFile(path, engine::kMaxPemFileBytes);
  if (!read.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", read.status().message()));
  }
  std::string pem = *std::move(read);
  if (!absl::StrContains(pem, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " is not a PEM file"));
  }
  return pem;
}

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files) {
  TlsPem pem;
  if (files.cert_chain.empty() && files.private_key.empty()) {
    if (!files.client_ca.empty()) {
      return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
    }
    return pem;
  }
  if (files.cert_chain.empty() || files.private_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  absl::StatusOr<std::string> cert = ReadPem("--tls-cert", files.cert_chain);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--tls-key", files.private_key);
  if (!key.ok()) return key.status();
  pem.cert_chain = *std::move(cert);
  pem.private_key = *std::move(key);
  if (!files.client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPem("--tls-client-ca", files.client_ca);
    if (!ca.ok()) return ca.status();
    pem.client_ca = *std::move(ca);
  }
  return pem;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsPem& pem) {
  if (pem.cert_chain.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!pem.client_ca.empty()) {
    options.pem_root_certs = pem.client_ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  options.pem_key_cert_pairs.push_back({pem.private_key, pem.cert_chain});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& files) {
  absl::StatusOr<TlsPem> pem = ReadTlsFiles(files);
  if (!pem.ok()) return pem.status();
  return MakeServerCredentials(*pem);
}

}  // namespace moeserve::server
