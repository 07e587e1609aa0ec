#include "server/accept_guard.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moeserve::server {
namespace {

using AcceptFunction = int (*)(int, sockaddr*, socklen_t*, int);

std::atomic<int64_t> descriptor_cap{-1};  // -1: not installed, pass through
std::atomic<int> reserve_fd{-1};
std::atomic<int64_t> shed_over_cap{0};
std::atomic<int64_t> shed_out_of_files{0};
std::atomic<int64_t> out_of_files_no_reserve{0};

AcceptFunction LibcAccept4() {
  static const AcceptFunction function =
      reinterpret_cast<AcceptFunction>(dlsym(RTLD_NEXT, "accept4"));
  return function;
}

int OpenReserve() { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

int64_t SoftOpenFileLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur == RLIM_INFINITY ? int64_t{1} << 20 : static_cast<int64_t>(limit.rlim_cur);
}

}  // namespace

std::string RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno));
  }
  const rlim_t soft = limit.rlim_cur;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::StrCat("open files: soft limit ", soft, ", hard limit ", limit.rlim_max,
                          "; raising the soft limit failed: ", std::strerror(errno));
    }
  }
  return absl::StrCat("open files: soft limit ", soft, " raised to the hard limit ",
                      limit.rlim_max);
}

int64_t InstallAcceptGuard() {
  return InstallAcceptGuard(std::max<int64_t>(64, SoftOpenFileLimit() / 16));
}

int64_t InstallAcceptGuard(int64_t headroom) {
  const int64_t soft = SoftOpenFileLimit();
  const int64_t cap = soft > 2 * headroom ? soft - headroom : soft / 2;
  if (reserve_fd.load() < 0) reserve_fd.store(OpenReserve());
  descriptor_cap.store(cap);
  return cap;
}

AcceptGuardStats AcceptGuardCounters() {
  return {.shed_over_cap = shed_over_cap.load(),
          .shed_out_of_files = shed_out_of_files.load(),
          .out_of_files_no_reserve = out_of_files_no_reserve.load()};
}

}  // namespace moeserve::server

// The interposed accept4 (see accept_guard.h). C linkage and default visibility: the dynamic
// linker must find it in the executable before the C library.
extern "C" __attribute__((visibility("default"))) int accept4(int listen_fd, sockaddr* address,
                                                              socklen_t* address_length,
                                                              int flags) {
  using namespace moeserve::server;
  const AcceptFunction libc_accept4 = LibcAccept4();
  if (libc_accept4 == nullptr) {
    errno = ENOSYS;
    return -1;
  }
  const int fd = libc_accept4(listen_fd, address, address_length, flags);
  const int64_t cap = descriptor_cap.load(std::memory_order_relaxed);
  if (cap < 0) return fd;
  if (fd >= 0) {
    if (fd < cap) return fd;
    close(fd);
    shed_over_cap.fetch_add(1, std::memory_order_relaxed);
    errno = EINTR;  // "try again": the caller moves on to the next pending connection
    return -1;
  }
  if (errno != EMFILE && errno != ENFILE) return -1;
  // Out of descriptors with a connection pending: free the reserve, accept the connection into
  // it, close it and take the reserve back.
  const int reserve = reserve_fd.exchange(-1);
  if (reserve < 0) {
    // Another thread holds it (or it could not be reopened): report "nothing pending" rather
    // than the error that would make gRPC drop the listener. The connections wait in the
    // backlog and are taken with the next arrival once descriptors are free again.
    out_of_files_no_reserve.fetch_add(1, std::memory_order_relaxed);
    errno = EAGAIN;
    return -1;
  }
  close(reserve);
  const int shed = libc_accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  const int accept_errno = errno;
  if (shed >= 0) close(shed);
  reserve_fd.store(OpenReserve());
  if (shed >= 0) {
    shed_out_of_files.fetch_add(1, std::memory_order_relaxed);
    errno = EINTR;
    return -1;
  }
  errno = accept_errno == EMFILE || accept_errno == ENFILE ? EAGAIN : accept_errno;
  return -1;
}
