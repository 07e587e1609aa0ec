// API-key access control for the Moeserve service.
//
// With `--api-key` set, every Moeserve RPC must carry the metadata `authorization: Bearer KEY`
// (the OpenAI/vLLM convention); otherwise it fails with UNAUTHENTICATED before anything else
// runs. grpc.health.v1 and reflection stay open so orchestrators can probe without the secret.
// The key is compared in constant time, so response timing reveals nothing about how much of a
// guess was right. GenerateService calls Check at the start of each RPC.
#pragma once

#include <string>
#include <string_view>

#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace moeserve::server {

// True when `given` equals `expected`; the time taken depends only on the lengths, never on
// where the first differing byte is.
bool ConstantTimeEquals(std::string_view expected, std::string_view given);

class ApiKeyCheck {
 public:
  // An empty key disables the check.
  explicit ApiKeyCheck(std::string api_key) : api_key_(std::move(api_key)) {}

  bool enabled() const { return !api_key_.empty(); }
  // OK, or UNAUTHENTICATED naming what is missing or wrong (never echoing the key).
  grpc::Status Check(const grpc::ServerContextBase& context) const;

 private:
  const std::string api_key_;
};

}  // namespace moeserve::server
