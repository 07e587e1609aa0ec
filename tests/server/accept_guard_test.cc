// The accept4 that accept_guard.cc interposes, in this process: under a lowered RLIMIT_NOFILE,
// a connection accepted above the descriptor cap, or while no descriptor is free at all, is
// closed (the client reads end of stream) and reported as EINTR, never as the EMFILE that made
// gRPC 1.51 drop its listener for good; once descriptors are free again, accept4 hands out
// connections as usual.
#include "server/accept_guard.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "gtest/gtest.h"

namespace moeserve::server {
namespace {

constexpr int kLimit = 128;
constexpr int kHeadroom = 16;  // cap: descriptors numbered 112 and above are shed

class AcceptGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(listen(listener_, 16), 0);
    socklen_t length = sizeof(address);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    rlimit lowered = saved_;
    lowered.rlim_cur = kLimit;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
    ASSERT_EQ(InstallAcceptGuard(kHeadroom), kLimit - kHeadroom);
  }
  void TearDown() override {
    for (int fd : fillers_) close(fd);
    close(listener_);
    setrlimit(RLIMIT_NOFILE, &saved_);
  }

  int Connect() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    return fd;
  }
  // Opens /dev/null until the next descriptor would be `next` (or none is left).
  void FillUntil(int next) {
    while (true) {
      const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) return;
      if (fd >= next) {
        close(fd);
        return;
      }
      fillers_.push_back(fd);
    }
  }
  void FreeFillers() {
    for (int fd : fillers_) close(fd);
    fillers_.clear();
  }
  static bool ClosedByPeer(int fd) {
    pollfd p{.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return false;
    char byte;
    return recv(fd, &byte, 1, 0) == 0;
  }

  rlimit saved_{};
  int listener_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

TEST_F(AcceptGuardTest, ConnectionAboveTheCapIsShedAndTheNextOneAccepted) {
  FillUntil(kLimit - kHeadroom);  // the accepted socket would get descriptor 112
  const int client = Connect();
  const int64_t shed_before = AcceptGuardCounters().shed_over_cap;
  errno = 0;
  EXPECT_EQ(accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC), -1);
  EXPECT_EQ(errno, EINTR);
  EXPECT_EQ(AcceptGuardCounters().shed_over_cap, shed_before + 1);
  EXPECT_TRUE(ClosedByPeer(client));
  close(client);

  FreeFillers();
  const int again = Connect();
  const int accepted = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(accepted, 0) << "errno " << errno;
  EXPECT_LT(accepted, kLimit - kHeadroom);
  close(accepted);
  close(again);
}

TEST_F(AcceptGuardTest, OutOfDescriptorsDrainsThroughTheReserveInsteadOfFailing) {
  const int client = Connect();
  FillUntil(kLimit);  // every descriptor taken but the guard's reserve
  const int64_t drained_before = AcceptGuardCounters().shed_out_of_files;
  errno = 0;
  EXPECT_EQ(accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC), -1);
  EXPECT_EQ(errno, EINTR) << "EMFILE reached the caller";
  EXPECT_EQ(AcceptGuardCounters().shed_out_of_files, drained_before + 1);
  EXPECT_TRUE(ClosedByPeer(client));
  // Nothing pending and still no descriptor: "try later", not an error.
  errno = 0;
  const int flags = fcntl(listener_, F_GETFL);
  fcntl(listener_, F_SETFL, flags | O_NONBLOCK);
  EXPECT_EQ(accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC), -1);
  EXPECT_EQ(errno, EAGAIN);
  close(client);

  FreeFillers();
  const int again = Connect();
  const int accepted = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  EXPECT_GE(accepted, 0) << "errno " << errno;
  close(accepted);
  close(again);
}

}  // namespace
}  // namespace moeserve::server
