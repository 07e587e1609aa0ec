// Keeps the listening sockets alive through file-descriptor exhaustion, and keeps headroom of
// free descriptors, for every accept in the process (gRPC's and /metrics').
//
// Debian's gRPC 1.51 gives up on a listening socket after one accept4() failure other than
// EAGAIN/EINTR/ECONNABORTED: a single EMFILE ("Too many open files") and the port never accepts
// again while the process lives (the CVE-2023-4785 class, fixed upstream in 1.53+; issue 21,
// row 1). We cannot upgrade gRPC here and its C++ API offers no accept hook with TLS, so this
// file defines accept4() itself; the dynamic linker binds gRPC's call to ours (the executable
// comes first in symbol lookup), and ours calls the C library's:
//   - a descriptor numbered at or above the cap (fewer than `headroom` descriptors left free) is
//     closed at once: the connection is shed, never half-served, and the model, the metrics
//     server and the running streams keep descriptors to work with;
//   - EMFILE/ENFILE (the cap did not prevent it: descriptors opened elsewhere) is the classic
//     reserve-descriptor drain: one descriptor held in reserve is released, the pending
//     connection accepted into it and closed, the reserve taken again;
// and in both cases the caller sees EINTR, so gRPC's accept loop goes on to the next pending
// connection and re-arms on EAGAIN as always. Why this and not our own accept loop handing
// sockets to gRPC, or rebuilding the listener: docs/hardening.md.
//
// main.cc installs it once at startup (after RaiseOpenFileLimit); until then accept4 passes
// straight through.
#pragma once

#include <cstdint>
#include <string>

namespace moeserve::server {

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns a line for the log with both.
std::string RaiseOpenFileLimit();

struct AcceptGuardStats {
  int64_t shed_over_cap = 0;            // accepted at or above the cap and closed
  int64_t shed_out_of_files = 0;        // drained through the reserve descriptor on EMFILE/ENFILE
  int64_t out_of_files_no_reserve = 0;  // EMFILE with the reserve already spent: left pending
};

// Enables the guard: descriptors numbered >= (RLIMIT_NOFILE soft limit - headroom) are shed.
// Returns the cap for the log. Without an argument the headroom is max(64, soft limit / 16):
// the model's files, the metrics server and the running streams keep descriptors to work with.
int64_t InstallAcceptGuard();
int64_t InstallAcceptGuard(int64_t headroom);

AcceptGuardStats AcceptGuardCounters();

}  // namespace moeserve::server
