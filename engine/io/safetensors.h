// Reader for the safetensors checkpoint format (reference §2.1).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of JSON describing
// every tensor (dtype, shape, byte range), then the raw tensor bytes. SafetensorsFile maps the
// file read-only and hands out spans into the mapping; nothing is copied here. The weight
// loader (engine/model) copies each span into device or host memory, and moeserve-make-model
// reads its own output back through this class to verify it.
//
// Checkpoints come from outside the process, so the header is validated completely before any
// byte range is handed out: every span returned by Data() lies inside the mapping. Errors name
// the file and, where there is one, the tensor. Codes: DataLoss when the file is shorter than
// its header says (truncated download), InvalidArgument when the header itself is malformed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/ops/dtype.h"

namespace moeserve::engine {

// Readers reject longer headers (the Rust reference implementation does the same), so a
// corrupt length cannot make us parse gigabytes of tensor data as JSON.
inline constexpr uint64_t kMaxSafetensorsHeaderSize = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;  // offsets relative to the start of the data buffer (after header)
  uint64_t data_end = 0;    // exclusive
  // Product of the shape (1 for a scalar). The parser guarantees it does not overflow.
  int64_t num_elements() const;
  uint64_t num_bytes() const { return data_end - data_begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;              // sorted by data_begin (then data_end, name)
  std::map<std::string, std::string> metadata;  // "__metadata__" (string values only)
};

// Pure parser, fuzzable: validates the JSON header text against a data buffer of data_size
// bytes. file_name only labels error messages. Rules: a JSON object (strict, no duplicate keys);
// each tensor entry has exactly dtype/shape/data_offsets; the dtype is known; dims are
// non-negative int64 whose product (and byte size) does not overflow; begin <= end;
// end - begin == numel * dtype size; ranges lie inside the data buffer and do not overlap.
// Gaps and trailing bytes are tolerated (some writers pad); 0-element tensors are allowed.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header_json,
                                                         uint64_t data_size,
                                                         std::string_view file_name);

// One open safetensors file. Move-only; owns a PROT_READ, MAP_PRIVATE mapping of the whole file
// that lives as long as the object, so spans from Data() stay valid until it is destroyed.
class SafetensorsFile {
 public:
  // Opens and validates `path`. NotFound (or another errno-derived code) if it cannot be opened.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr if absent.
  const TensorInfo* Find(std::string_view name) const;
  // Bytes of that tensor (no alignment assumed: offsets in the file are arbitrary). `info` must
  // come from this file; an info whose range is not inside the data buffer yields an empty span.
  absl::Span<const uint8_t> Data(const TensorInfo& info) const;
  // Tells the kernel this process is done with that tensor's bytes: the whole pages inside its
  // range leave the mapping's resident set (a later Data() reads them from the file again). The
  // weight loader calls it after converting each tensor, so loading holds at most one tensor of
  // the mapping resident besides the converted weights.
  void DropPages(const TensorInfo& info) const;

  // Size of the whole file, and where the data buffer starts in it (8 + header length). Useful
  // to loaders that read with pread/O_DIRECT instead of touching the mapping.
  uint64_t file_size() const { return file_size_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t data_size() const { return file_size_ - data_offset_; }

 private:
  // Transparent hash so Find(string_view) does not allocate.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  SafetensorsFile() = default;
  void Unmap();

  std::string path_;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t, NameHash, std::equal_to<>> index_;  // name -> tensors_
  const uint8_t* mapping_ = nullptr;
  uint64_t file_size_ = 0;
  uint64_t data_offset_ = 0;
};

}  // namespace moeserve::engine
