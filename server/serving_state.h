// What the RPC handlers share once the model is up: the engine, the tokenizer, the limits that
// validation checks against, the model description, and the ids of requests in flight.
//
// main.cc builds one ServingBackend after warmup and hands it to GenerateService; before that
// the service answers UNAVAILABLE. LiveRequests lets the shutdown path cancel every request
// still running when the drain grace period ends.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "engine/engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "grpcpp/support/status.h"
#include "moeserve/v1/moeserve.pb.h"
#include "server/request_validation.h"

namespace moeserve::server {

// Constant after construction; everything it points to outlives the gRPC server.
struct ServingBackend {
  engine::Engine* engine = nullptr;
  const engine::Tokenizer* tokenizer = nullptr;
  RequestLimits limits;
  moeserve::v1::GetModelInfoResponse model_info;
};

// Called once per finished RPC with its method name ("Generate", "Tokenize", ...) and code.
using CallObserver = std::function<void(const std::string& method, grpc::StatusCode code)>;

// Request ids submitted by Generate streams whose final event has not arrived, with who
// submitted each (an owner string, GenerateService::CallerIdentity) so that Abort ends only the
// caller's own requests. Counted, since a client may reuse an id: the engine refuses the second
// live one, but both streams register until then.
class LiveRequests {
 public:
  void Add(const std::string& id, const std::string& owner) {
    std::lock_guard lock(mu_);
    ++owners_[id][owner];
  }
  void Remove(const std::string& id, const std::string& owner) {
    std::lock_guard lock(mu_);
    auto it = owners_.find(id);
    if (it == owners_.end()) return;
    auto count = it->second.find(owner);
    if (count != it->second.end() && --count->second == 0) it->second.erase(count);
    if (it->second.empty()) owners_.erase(it);
  }
  // Whether `id` is live and registered by `owner` alone: while a second client's stream with
  // the same id is still registering, neither may abort it.
  bool OwnedBy(const std::string& id, const std::string& owner) const {
    std::lock_guard lock(mu_);
    auto it = owners_.find(id);
    return it != owners_.end() && it->second.size() == 1 && it->second.contains(owner);
  }
  std::vector<std::string> Ids() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> ids;
    for (const auto& [id, owners] : owners_) ids.push_back(id);
    return ids;
  }

 private:
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int>> owners_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace moeserve::server
