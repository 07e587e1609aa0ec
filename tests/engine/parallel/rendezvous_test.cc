// The unique-id rendezvous over a shared file and over TCP: every rank gets rank 0's random
// blob; a missing rank 0 times out; malformed addresses are refused.
#include "engine/parallel/rendezvous.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

using namespace std::chrono_literals;

std::vector<absl::StatusOr<std::string>> RunRanks(const std::string& address, int world,
                                                  const std::string& blob) {
  std::vector<absl::StatusOr<std::string>> results(world, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  // Rank 0 starts last, so the others really wait for it.
  for (int r = world - 1; r >= 0; --r) {
    threads.emplace_back([&, r] {
      results[r] = ExchangeBlob(address, r, world, r == 0 ? blob : std::string("junk"), 20s);
    });
    if (r == 1) std::this_thread::sleep_for(50ms);
  }
  for (std::thread& t : threads) t.join();
  return results;
}

std::string RandomBlob(uint32_t seed) {
  testing::TestRng rng(seed);
  std::string blob(128, '\0');
  for (char& c : blob) c = static_cast<char>(rng.Bits() & 0xff);
  return blob;
}

TEST(RendezvousTest, SharedFile) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/rendezvous_", getpid());
  const std::string blob = RandomBlob(5);
  for (const auto& result : RunRanks("file:" + path, 4, blob)) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, blob);
  }
  std::filesystem::remove(path);
}

TEST(RendezvousTest, Tcp) {
  const std::string blob = RandomBlob(6);
  // A port derived from the pid keeps parallel test processes apart.
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  for (const auto& result : RunRanks(absl::StrCat("tcp:127.0.0.1:", port), 3, blob)) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, blob);
  }
}

TEST(RendezvousTest, MissingRankZeroTimesOut) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/rendezvous_none_", getpid());
  EXPECT_EQ(ExchangeBlob("file:" + path, 1, 2, "", 100ms).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ExchangeBlob("tcp:127.0.0.1:1", 1, 2, "", 100ms).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(RendezvousTest, MalformedAddresses) {
  for (const char* address : {"nfs:/x", "tcp:hostonly", "tcp:host:99999", "tcp::80"}) {
    EXPECT_EQ(ExchangeBlob(address, 0, 2, "x", 100ms).status().code(),
              absl::StatusCode::kInvalidArgument)
        << address;
  }
  EXPECT_EQ(ExchangeBlob("file:/tmp/x", 2, 2, "x", 100ms).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moeserve::engine
