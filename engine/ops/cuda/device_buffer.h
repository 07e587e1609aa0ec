// Device memory that frees itself: DeviceBuffer (one cudaMalloc) and DeviceArena (a bump
// allocator over one DeviceBuffer for a step's scratch, so a step never calls cudaMalloc).
//
// The CUDA backend allocates weights and KV pages once as DeviceBuffers at load, and takes each
// step's activations from a DeviceArena that the step resets at its start (DESIGN.md §4: no
// cudaMalloc per step). Neither type is thread-safe; each belongs to the engine thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace moeserve::engine {

// Move-only owner of one device allocation (ARCHITECTURE.md §5 rule 7).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // cudaMalloc of `bytes` (0 gives an empty buffer); errors name the call and the size.
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  // Allocate + CopyFromHost: a device copy of `bytes` host bytes (weights, tables).
  static absl::StatusOr<DeviceBuffer> FromHost(const void* host, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t size_bytes() const { return size_bytes_; }

  // Synchronous host <-> device copies of the first `bytes` bytes.
  absl::Status CopyFromHost(const void* host, size_t bytes);
  absl::Status CopyToHost(void* host, size_t bytes) const;
  // Fills every byte with `value` (tests poison outputs with 0xFF, which is NaN in
  // fp32, bf16 and e4m3).
  absl::Status Fill(uint8_t value);

 private:
  DeviceBuffer(void* data, size_t bytes) : data_(data), size_bytes_(bytes) {}
  void Release();

  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

// Bump allocator over one preallocated buffer. Allocations are `kAlignmentBytes` aligned
// (cuBLASLt wants 16 B for data and scales, 256 B for its workspace) and live until Reset().
class DeviceArena {
 public:
  static constexpr size_t kAlignmentBytes = 256;

  DeviceArena() = default;  // empty: every Allocate fails

  static absl::StatusOr<DeviceArena> Create(size_t capacity_bytes);

  // ResourceExhausted naming the request and the capacity when the arena is full.
  absl::StatusOr<void*> Allocate(size_t bytes);
  template <typename T>
  absl::StatusOr<T*> AllocateArray(size_t count) {
    absl::StatusOr<void*> p = Allocate(count * sizeof(T));
    if (!p.ok()) return p.status();
    return static_cast<T*>(*p);
  }
  // Frees everything allocated since the last Reset (no device call).
  void Reset() { used_bytes_ = 0; }
  // Frees everything allocated after `mark` (a used_bytes() taken earlier), so a model can keep
  // a step's long-lived buffers and reuse the rest layer by layer.
  void RewindTo(size_t mark) {
    if (mark < used_bytes_) used_bytes_ = mark;
  }
  // Marks everything below `mark` as in use: after replaying a CUDA graph whose buffers were
  // taken from the arena when it was captured, so later allocations of the step do not overlap
  // them. `mark` must be within the capacity.
  void AdvanceTo(size_t mark) {
    if (mark > used_bytes_) used_bytes_ = mark;
    if (used_bytes_ > peak_bytes_) peak_bytes_ = used_bytes_;
  }

  size_t capacity_bytes() const { return buffer_.size_bytes(); }
  size_t used_bytes() const { return used_bytes_; }
  size_t peak_bytes() const { return peak_bytes_; }

 private:
  explicit DeviceArena(DeviceBuffer buffer) : buffer_(std::move(buffer)) {}

  DeviceBuffer buffer_;
  size_t used_bytes_ = 0;
  size_t peak_bytes_ = 0;
};

}  // namespace moeserve::engine
