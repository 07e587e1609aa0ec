// How the ranks of a multi-process group agree on a secret before they can talk: rank 0 makes
// an opaque blob (NCCL's 128-byte ncclUniqueId) and every other rank must receive it.
//
// Two transports, chosen by the address: "file:/shared/dir/id" (a path on a filesystem every
// rank sees; rank 0 writes it atomically, the others poll for it) or "tcp:HOST:PORT" (rank 0
// listens, each other rank connects and reads the blob; for nodes without a shared
// filesystem). NcclCommunicator uses it to spread the unique id across processes and nodes;
// it is independent of CUDA so it is tested on the CPU.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/statusor.h"

namespace moeserve::engine {

// OK for "file:PATH" (PATH non-empty) and "tcp:HOST:PORT" (port 1..65535); InvalidArgument
// naming the address otherwise. The server checks `--rendezvous` with it before loading.
absl::Status ValidateRendezvousAddress(const std::string& address);

// Rank 0 passes its blob and gets it back; other ranks pass anything and get rank 0's.
// world_size: rank 0 over TCP serves world_size − 1 peers before returning. Fails with
// DeadlineExceeded after `timeout`, InvalidArgument for a malformed address.
absl::StatusOr<std::string> ExchangeBlob(const std::string& address, int rank, int world_size,
                                         const std::string& blob,
                                         std::chrono::milliseconds timeout);

}  // namespace moeserve::engine
