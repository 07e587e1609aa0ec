#include "engine/io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <limits>
#include <set>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/io/checkpoint.h"
#include "engine/io/strict_json.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using io_internal::AsAbsl;
using OrderedJson = nlohmann::ordered_json;

constexpr std::string_view kMetadataKey = "__metadata__";

absl::Status WriteAll(int fd, absl::Span<const uint8_t> bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot write '", path, "'"));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Span<const uint8_t> AsBytes(std::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Writes the concatenation of `pieces` to path+".tmp", fsyncs, and renames it over `path`. On
// failure the temporary file is removed and `path` is untouched.
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::vector<absl::Span<const uint8_t>>& pieces) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create '", tmp, "'"));
  absl::Status status;
  for (const absl::Span<const uint8_t>& piece : pieces) {
    status = WriteAll(fd, piece, tmp);
    if (!status.ok()) break;
  }
  if (status.ok() && fsync(fd) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot fsync '", tmp, "'"));
  }
  if (close(fd) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot close '", tmp, "'"));
  }
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  if (!status.ok()) unlink(tmp.c_str());
  return status;
}

// Serializes JSON, turning nlohmann's exception for invalid UTF-8 into a status.
absl::StatusOr<std::string> Dump(const OrderedJson& j, int indent, const std::string& path) {
  try {
    return j.dump(indent);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot serialize header (names must be valid UTF-8): ", e.what()));
  }
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  // The Rust writer puts __metadata__ first; ordered_json keeps insertion order so the header
  // lists tensors in file order, which makes hexdumps of small fixtures readable.
  OrderedJson header = OrderedJson::object();
  OrderedJson meta = OrderedJson::object();
  meta["format"] = "pt";
  for (const auto& [key, value] : metadata) meta[key] = value;
  header[std::string(kMetadataKey)] = std::move(meta);

  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const auto error = [&](std::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "': ", AsAbsl(what)));
    };
    if (t.name == kMetadataKey) return error("name is reserved for the metadata entry");
    if (!names.insert(t.name).second) return error("name appears twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) return error(absl::StrCat("negative dimension ", d));
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) {
        return error("shape overflows");
      }
    }
    uint64_t expected = 0;
    if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(t.dtype)), &expected)) {
      return error("shape overflows");
    }
    if (t.bytes.size() != expected) {
      return error(absl::StrCat("has ", t.bytes.size(), " bytes but ", AsAbsl(DTypeName(t.dtype)),
                                " x ", numel, " elements needs ", expected));
    }
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }

  absl::StatusOr<std::string> header_json = Dump(header, /*indent=*/-1, path);
  if (!header_json.ok()) return header_json.status();
  // Pad with spaces (JSON whitespace) so the data buffer starts at a multiple of 8 in the file.
  header_json->append((8 - header_json->size() % 8) % 8, ' ');

  uint8_t length[8];
  uint64_t n = header_json->size();
  for (uint8_t& b : length) {  // little-endian regardless of host order
    b = static_cast<uint8_t>(n & 0xff);
    n >>= 8;
  }
  std::vector<absl::Span<const uint8_t>> pieces;
  pieces.reserve(tensors.size() + 2);
  pieces.emplace_back(length, sizeof length);
  pieces.push_back(AsBytes(*header_json));
  for (const TensorToWrite& t : tensors) pieces.push_back(t.bytes);
  return WriteFileAtomically(path, pieces);
}

absl::Status WriteSafetensorsIndex(const std::string& dir,
                                   const std::map<std::string, std::string>& weight_map,
                                   uint64_t total_size) {
  const std::string path = absl::StrCat(dir, "/", kSafetensorsIndexFileName);
  OrderedJson index = OrderedJson::object();
  index["metadata"] = {{"total_size", total_size}};
  OrderedJson map = OrderedJson::object();
  for (const auto& [name, shard] : weight_map) map[name] = shard;
  index["weight_map"] = std::move(map);
  // HF writes the index indented by 2; keep that so diffs against real indexes are clean.
  absl::StatusOr<std::string> text = Dump(index, /*indent=*/2, path);
  if (!text.ok()) return text.status();
  text->push_back('\n');
  return WriteFileAtomically(path, {AsBytes(*text)});
}

}  // namespace moeserve::engine
