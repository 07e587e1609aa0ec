// Helpers shared by the engine/io tests: a fresh temporary directory per test, and a writer of
// raw safetensors bytes (length + header text + data) for crafting malformed files that the
// real writer refuses to produce.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace moeserve::engine::testing {

// A directory under ::testing::TempDir() unique to this process and test, removed on
// destruction so reruns start clean.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    static std::atomic<int> counter{0};
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info != nullptr ? std::string(info->test_suite_name()) + "." + info->name()
                                       : std::string("io_test");
    for (char& c : name) {
      if (c == '/') c = '_';  // parameterized test names contain slashes
    }
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("moeserve_" + name + "_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  std::string path() const { return path_.string(); }
  std::string File(std::string_view name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The bytes of a safetensors file: 8-byte LE length (the header's size unless overridden),
// the header text verbatim, then `data`.
inline std::vector<uint8_t> RawSafetensors(std::string_view header,
                                           const std::vector<uint8_t>& data = {},
                                           std::optional<uint64_t> length = std::nullopt) {
  uint64_t n = length.value_or(header.size());
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; ++i) {
    bytes.push_back(static_cast<uint8_t>(n & 0xff));
    n >>= 8;
  }
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

inline void WriteRawSafetensors(const std::string& path, std::string_view header,
                                const std::vector<uint8_t>& data = {},
                                std::optional<uint64_t> length = std::nullopt) {
  WriteBytes(path, RawSafetensors(header, data, length));
}

inline std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> bytes(n);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  return bytes;
}

inline std::vector<uint8_t> ToVector(absl::Span<const uint8_t> s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

}  // namespace moeserve::engine::testing
