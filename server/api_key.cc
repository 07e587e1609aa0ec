#include "server/api_key.h"

#include <cstdint>

namespace moeserve::server {

bool ConstantTimeEquals(std::string_view expected, std::string_view given) {
  // Walk the whole of `given` whatever happens, folding every difference (and the length
  // mismatch) into one accumulator that is only looked at at the end.
  uint8_t difference = expected.size() == given.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    const uint8_t want = expected.empty() ? 0 : static_cast<uint8_t>(expected[i % expected.size()]);
    difference |= static_cast<uint8_t>(want ^ static_cast<uint8_t>(given[i]));
  }
  // An empty `given` against a non-empty key already differs by length.
  return difference == 0;
}

grpc::Status ApiKeyCheck::Check(const grpc::ServerContextBase& context) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing API key: send the metadata 'authorization: Bearer <key>'");
  }
  constexpr std::string_view kScheme = "Bearer ";
  const std::string_view value(it->second.data(), it->second.size());
  if (value.substr(0, kScheme.size()) != kScheme) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be 'Bearer <key>'");
  }
  if (!ConstantTimeEquals(api_key_, value.substr(kScheme.size()))) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid API key");
  }
  return grpc::Status::OK;
}

}  // namespace moeserve::server
