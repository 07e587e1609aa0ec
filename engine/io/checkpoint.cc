#include "engine/io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/io/bounded_file.h"
#include "engine/io/strict_json.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

namespace fs = std::filesystem;
using io_internal::AsAbsl;
using nlohmann::json;

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  return ReadRegularFile(path, kMaxIndexFileBytes);
}

// Shard names come from a downloaded file; refuse ones that would escape the directory.
bool IsSafeShardName(std::string_view name) {
  if (name.empty() || name.front() == '/') return false;
  while (true) {
    const size_t slash = name.find('/');
    const std::string_view part = name.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) return true;
    name.remove_prefix(slash + 1);
  }
}

// Parses the index: weight_map as (tensor -> shard), and the distinct shards in order of
// first appearance in the (sorted) weight_map, so shard opening order is deterministic.
absl::Status ParseIndex(const std::string& index_path, std::map<std::string, std::string>& weights,
                        std::vector<std::string>& shards) {
  absl::StatusOr<std::string> text = ReadTextFile(index_path);
  if (!text.ok()) return text.status();
  absl::StatusOr<json> index = io_internal::ParseStrictJson(*text, index_path);
  if (!index.ok()) return index.status();
  if (!index->is_object() || !index->contains("weight_map") ||
      !(*index)["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": expected an object with a \"weight_map\" object"));
  }
  for (const auto& [tensor, shard] : (*index)["weight_map"].items()) {
    if (!shard.is_string() || !IsSafeShardName(shard.get_ref<const std::string&>())) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": tensor '", tensor,
          "': shard must be a relative file name inside the directory, got ", shard.dump()));
    }
    const std::string& name = shard.get_ref<const std::string&>();
    if (std::find(shards.begin(), shards.end(), name) == shards.end()) shards.push_back(name);
    weights.emplace(tensor, name);
  }
  if (weights.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is empty"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Checkpoint::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorInfo& info : file->tensors()) {
    const auto [it, inserted] = tensors_.emplace(info.name, Entry{&info, file.get()});
    if (!inserted) {
      return absl::DataLossError(absl::StrCat("tensor '", info.name, "' appears in both ",
                                              it->second.file->path(), " and ", file->path()));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<Checkpoint> Checkpoint::Open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("checkpoint directory ", dir, " does not exist"));
  }
  Checkpoint checkpoint(dir);
  const auto open_shard = [&](const std::string& file_name) -> absl::Status {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(absl::StrCat(dir, "/", file_name));
    if (!file.ok()) return file.status();
    return checkpoint.AddFile(*std::move(file));
  };

  const std::string index_path = absl::StrCat(dir, "/", kSafetensorsIndexFileName);
  if (fs::exists(index_path, ec)) {
    std::map<std::string, std::string> weights;
    std::vector<std::string> shards;
    if (absl::Status s = ParseIndex(index_path, weights, shards); !s.ok()) return s;
    for (const std::string& shard : shards) {
      if (!fs::exists(absl::StrCat(dir, "/", shard), ec)) {
        return absl::NotFoundError(
            absl::StrCat(index_path, " names shard ", shard, " but it is not in ", dir));
      }
      if (absl::Status s = open_shard(shard); !s.ok()) return s;
    }
    // AddFile already rejected a tensor held by two shards, so a tensor found in a shard other
    // than the one the index names is not in the named one: one check covers both rules.
    for (const auto& [tensor, shard] : weights) {
      const auto it = checkpoint.tensors_.find(tensor);
      const std::string shard_path = absl::StrCat(dir, "/", shard);
      if (it == checkpoint.tensors_.end()) {
        return absl::DataLossError(absl::StrCat(index_path, " maps tensor '", tensor, "' to ",
                                                shard_path, " but no shard contains it"));
      }
      if (it->second.file->path() != shard_path) {
        return absl::DataLossError(absl::StrCat(index_path, " maps tensor '", tensor, "' to ",
                                                shard_path, " but it is in ",
                                                it->second.file->path()));
      }
    }
    return checkpoint;
  }

  if (fs::exists(absl::StrCat(dir, "/", kSingleSafetensorsFileName), ec)) {
    if (absl::Status s = open_shard(kSingleSafetensorsFileName); !s.ok()) return s;
    return checkpoint;
  }

  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    // is_regular_file follows symlinks, which HF's cache layout uses for every file; a broken
    // link is skipped (its own error code, so it does not fail the listing).
    std::error_code entry_ec;
    if (absl::EndsWith(name, ".safetensors") && entry.is_regular_file(entry_ec)) {
      names.push_back(name);
    }
  }
  if (ec) {
    return absl::ErrnoToStatus(ec.value(), absl::StrCat("cannot list checkpoint directory ", dir));
  }
  if (names.empty()) {
    return absl::NotFoundError(absl::StrCat("no safetensors files in checkpoint directory ", dir));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    if (absl::Status s = open_shard(name); !s.ok()) return s;
  }
  return checkpoint;
}

absl::StatusOr<TensorView> Checkpoint::Get(std::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor '", AsAbsl(name), "' not found in checkpoint ", dir_));
  }
  const Entry& e = it->second;
  return TensorView{e.info, e.file, e.file->Data(*e.info)};
}

bool Checkpoint::Contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) names.push_back(name);
  return names;
}

}  // namespace moeserve::engine
