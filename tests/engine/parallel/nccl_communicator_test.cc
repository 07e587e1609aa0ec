// NcclCommunicator on every local GPU (one thread per GPU, unique id through a file
// rendezvous) against host references on random data. Needs at least 2 GPUs; skips elsewhere.
#include "engine/parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/ops/dtype.h"
#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

int GpuCount() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

template <typename T>
std::vector<T> Download(const T* device, size_t n) {
  std::vector<T> host(n);
  cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost);
  return host;
}

template <typename T>
T* Upload(const std::vector<T>& host) {
  T* device = nullptr;
  cudaMalloc(&device, std::max<size_t>(1, host.size()) * sizeof(T));
  cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  // A pageable cudaMemcpy may return before the DMA lands; the communicator's streams are
  // non-blocking and would not wait for it.
  cudaDeviceSynchronize();
  return device;
}

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = GpuCount();
    if (world_ < 2) {
      GTEST_SKIP() << "NcclCommunicator needs at least 2 GPUs; this machine has " << world_;
    }
  }

  // Creates a communicator per GPU and runs body(rank, comm) on one thread each.
  void RunOnEveryGpu(const std::function<void(int, NcclCommunicator&)>& body) {
    const std::string address =
        absl::StrCat("file:", ::testing::TempDir(), "/nccl_id_", getpid(), "_", ++round_);
    std::vector<std::thread> threads;
    for (int r = 0; r < world_; ++r) {
      threads.emplace_back([&, r] {
        cudaSetDevice(r);
        auto comm = NcclCommunicator::Create(
            {.rank = r, .world_size = world_, .device = r, .rendezvous = address});
        ASSERT_TRUE(comm.ok()) << comm.status();
        body(r, **comm);
      });
    }
    for (std::thread& t : threads) t.join();
  }

  int world_ = 0;
  int round_ = 0;
};

TEST_F(NcclCommunicatorTest, CollectivesMatchHostReferences) {
  testing::TestRng rng(900);
  const int64_t n = 10007;
  std::vector<std::vector<float>> data(world_);
  std::vector<float> sum(n, 0.0f);
  for (int r = 0; r < world_; ++r) {
    data[r] = rng.NormalFloats(n);
    for (int64_t i = 0; i < n; ++i) sum[i] += data[r][i];
  }
  // Variable all-to-all blocks, some empty.
  std::vector<std::vector<int64_t>> send_counts(world_, std::vector<int64_t>(world_));
  for (auto& row : send_counts) {
    for (auto& c : row) c = rng.Int(0, 2) == 0 ? 0 : rng.Int(1, 300);
  }
  std::vector<std::vector<float>> send(world_);
  for (int r = 0; r < world_; ++r) {
    int64_t total = 0;
    for (int64_t c : send_counts[r]) total += c;
    send[r] = rng.NormalFloats(total);
  }
  RunOnEveryGpu([&](int r, NcclCommunicator& comm) {
    float* reduced = Upload(data[r]);
    ASSERT_TRUE(comm.AllReduceSum(reduced, n, CommDataType::kFloat32).ok());
    const std::vector<float> got = Download(reduced, n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], sum[i], 1e-5f * (1 + std::fabs(sum[i])));

    float* gathered = nullptr;
    cudaMalloc(&gathered, world_ * n * sizeof(float));
    float* mine = Upload(data[r]);
    ASSERT_TRUE(comm.AllGather(mine, n, gathered, CommDataType::kFloat32).ok());
    const std::vector<float> all = Download(gathered, world_ * n);
    for (int peer = 0; peer < world_; ++peer) {
      ASSERT_TRUE(std::equal(data[peer].begin(), data[peer].end(), all.begin() + peer * n));
    }

    absl::StatusOr<std::vector<int64_t>> recv_counts = comm.AllToAllCounts(send_counts[r]);
    ASSERT_TRUE(recv_counts.ok()) << recv_counts.status();
    std::vector<float> expected;
    for (int peer = 0; peer < world_; ++peer) {
      ASSERT_EQ((*recv_counts)[peer], send_counts[peer][r]);
      int64_t offset = 0;
      for (int j = 0; j < r; ++j) offset += send_counts[peer][j];
      expected.insert(expected.end(), send[peer].begin() + offset,
                      send[peer].begin() + offset + send_counts[peer][r]);
    }
    float* device_send = Upload(send[r]);
    float* device_recv = nullptr;
    cudaMalloc(&device_recv, std::max<size_t>(1, expected.size()) * sizeof(float));
    ASSERT_TRUE(comm.AllToAllV(device_send, send_counts[r], device_recv, *recv_counts,
                               CommDataType::kFloat32)
                    .ok());
    EXPECT_EQ(Download(device_recv, expected.size()), expected);

    float* broadcast = Upload(data[r]);
    ASSERT_TRUE(comm.Broadcast(broadcast, n, CommDataType::kFloat32, world_ - 1).ok());
    EXPECT_EQ(Download(broadcast, n), data[world_ - 1]);
    EXPECT_TRUE(comm.Barrier().ok());
    for (void* p : {static_cast<void*>(reduced), static_cast<void*>(gathered),
                    static_cast<void*>(mine), static_cast<void*>(device_send),
                    static_cast<void*>(device_recv), static_cast<void*>(broadcast)}) {
      cudaFree(p);
    }
  });
}

// The GPU forward's mode: ranks are threads sharing one id (no rendezvous), collectives queue
// on the caller's stream without waiting; bf16 sums and host-memory BroadcastBytes.
TEST_F(NcclCommunicatorTest, SharedIdStreamOrderedBf16AndBroadcastBytes) {
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();
  testing::TestRng rng(901);
  const int64_t n = 4099;
  std::vector<std::vector<uint16_t>> data(world_);
  for (int r = 0; r < world_; ++r) data[r] = rng.NormalBf16(n);
  std::string payload(1001, '\0');
  for (char& c : payload) c = static_cast<char>(rng.Int(0, 255));
  std::vector<std::thread> threads;
  for (int r = 0; r < world_; ++r) {
    threads.emplace_back([&, r] {
      cudaSetDevice(r);
      cudaStream_t stream = nullptr;
      cudaStreamCreate(&stream);
      auto comm = NcclCommunicator::Create(
          {.rank = r, .world_size = world_, .device = r, .unique_id = *id, .stream = stream});
      ASSERT_TRUE(comm.ok()) << comm.status();
      uint16_t* values = Upload(data[r]);
      ASSERT_TRUE((*comm)->AllReduceSum(values, n, CommDataType::kBfloat16).ok());
      cudaStreamSynchronize(stream);  // stream-ordered: the host waits before reading
      const std::vector<uint16_t> got = Download(values, n);
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0.0f;
        for (int peer = 0; peer < world_; ++peer) sum += Bf16ToFloat(data[peer][i]);
        // NCCL may round partial sums to bf16 on the way: a few bf16 ulps.
        ASSERT_NEAR(Bf16ToFloat(got[i]), sum, 0.03f * (1.0f + std::fabs(sum))) << i;
      }
      std::string bytes = r == 0 ? payload : std::string("stale");
      ASSERT_TRUE((*comm)->BroadcastBytes(bytes, 0).ok());
      EXPECT_EQ(bytes, payload) << "rank " << r;
      cudaFree(values);
      comm->reset();
      cudaStreamDestroy(stream);
    });
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace
}  // namespace moeserve::engine
