// A checkpoint directory in the Hugging Face layout: one or more safetensors shards, optionally
// with a model.safetensors.index.json mapping tensor names to shards (reference §2.1).
//
// Checkpoint opens every shard once (see SafetensorsFile: read-only mappings, validated headers)
// and answers "where are the bytes of tensor X". The weight loader (engine/model) walks it to
// build the model; moeserve-make-model opens its output to verify the round trip. Cross-file
// consistency is checked at Open, so a checkpoint that opens has exactly one home per tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/io/safetensors.h"
#include "engine/io/safetensors_writer.h"  // WriteSafetensorsIndex, for callers writing dirs

namespace moeserve::engine {

inline constexpr char kSafetensorsIndexFileName[] = "model.safetensors.index.json";
inline constexpr char kSingleSafetensorsFileName[] = "model.safetensors";

// A tensor and where its bytes live. The pointers stay valid as long as the Checkpoint does.
struct TensorView {
  const TensorInfo* info = nullptr;
  const SafetensorsFile* file = nullptr;
  absl::Span<const uint8_t> bytes;
};

class Checkpoint {
 public:
  // If dir has model.safetensors.index.json: opens every shard named in weight_map (each once).
  // Every tensor named in the index must exist in the named shard, and a shard must not hold a
  // tensor that the index maps to another shard or that also appears in another shard (DataLoss
  // naming both files). Tensors a shard holds that the index does not mention are kept, as HF
  // loaders do. Otherwise, if dir has model.safetensors, it alone is used; otherwise every
  // *.safetensors file in dir (sorted by name), with a tensor in two files an error.
  // No safetensors at all: NotFound naming dir. A shard the index names but that is absent:
  // NotFound naming the index and the shard.
  static absl::StatusOr<Checkpoint> Open(const std::string& dir);

  Checkpoint(Checkpoint&&) = default;
  Checkpoint& operator=(Checkpoint&&) = default;
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  const std::string& dir() const { return dir_; }
  // NotFound "tensor 'X' not found in checkpoint DIR".
  absl::StatusOr<TensorView> Get(std::string_view name) const;
  bool Contains(std::string_view name) const;
  std::vector<std::string> TensorNames() const;  // sorted
  size_t num_tensors() const { return tensors_.size(); }
  // The open shards, in the order they were opened (index order, or sorted file names). A
  // loader may use this to read shard by shard, in file order, for sequential I/O.
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  struct Entry {
    const TensorInfo* info;
    const SafetensorsFile* file;
  };

  explicit Checkpoint(std::string dir) : dir_(std::move(dir)) {}
  // Adds every tensor of `file` to tensors_; DataLoss if one is already there from another file.
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;  // owned; stable addresses for Entry
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace moeserve::engine
