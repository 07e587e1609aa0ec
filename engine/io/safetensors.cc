#include "engine/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/io/bounded_file.h"
#include "engine/io/strict_json.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {
namespace {

using io_internal::AsAbsl;
using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

// Errors about one tensor's entry: "<file>: tensor '<name>': <what>".
absl::Status TensorError(absl::StatusCode code, std::string_view file, std::string_view tensor,
                         std::string_view what) {
  return absl::Status(
      code, absl::StrCat(AsAbsl(file), ": tensor '", AsAbsl(tensor), "': ", AsAbsl(what)));
}

// A JSON integer that is >= 0 and fits in `max`; nullopt for anything else (floats, negatives,
// strings, and integers nlohmann had to store as double because they exceed uint64).
std::optional<uint64_t> NonNegativeInteger(const json& value, uint64_t max) {
  uint64_t v = 0;
  if (value.is_number_unsigned()) {
    v = value.get<uint64_t>();
  } else if (value.is_number_integer()) {
    const int64_t s = value.get<int64_t>();
    if (s < 0) return std::nullopt;
    v = static_cast<uint64_t>(s);
  } else {
    return std::nullopt;
  }
  if (v > max) return std::nullopt;
  return v;
}

absl::StatusOr<TensorInfo> ParseTensorEntry(const std::string& name, const json& entry,
                                            uint64_t data_size, std::string_view file) {
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  if (!entry.is_object()) {
    return TensorError(kInvalid, file, name,
                       absl::StrCat("entry must be an object, got ", entry.type_name()));
  }
  for (const auto& [key, value] : entry.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return TensorError(kInvalid, file, name, absl::StrCat("unexpected key '", key, "'"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(key)) {
      return TensorError(kInvalid, file, name, absl::StrCat("missing key '", key, "'"));
    }
  }

  TensorInfo info;
  info.name = name;

  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) return TensorError(kInvalid, file, name, "dtype must be a string");
  const std::optional<DType> parsed_dtype = ParseDTypeName(dtype.get_ref<const std::string&>());
  if (!parsed_dtype.has_value()) {
    return TensorError(kInvalid, file, name,
                       absl::StrCat("unknown dtype '", dtype.get_ref<const std::string&>(), "'"));
  }
  info.dtype = *parsed_dtype;

  const json& shape = entry["shape"];
  if (!shape.is_array()) return TensorError(kInvalid, file, name, "shape must be an array");
  // numel is tracked as uint64 with an int64 bound; a zero dim makes the product 0 however
  // large the other dims are, but each dim must still be a valid int64.
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& dim : shape) {
    const std::optional<uint64_t> d =
        NonNegativeInteger(dim, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
    if (!d.has_value()) {
      return TensorError(kInvalid, file, name,
                         absl::StrCat("shape entries must be non-negative integers that fit in "
                                      "int64, got ",
                                      dim.dump()));
    }
    info.shape.push_back(static_cast<int64_t>(*d));
    if (__builtin_mul_overflow(numel, *d, &numel)) overflow = true;
  }
  uint64_t expected_bytes = 0;
  const bool zero_dim = std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end();
  if (zero_dim) {
    numel = 0;
    overflow = false;
  }
  if (overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, static_cast<uint64_t>(DTypeSize(info.dtype)),
                             &expected_bytes)) {
    return TensorError(kInvalid, file, name,
                       absl::StrCat("shape [", absl::StrJoin(info.shape, ", "),
                                    "] has too many elements (overflows int64 bytes)"));
  }

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    return TensorError(kInvalid, file, name, "data_offsets must be an array of 2 integers");
  }
  const std::optional<uint64_t> begin =
      NonNegativeInteger(offsets[0], std::numeric_limits<uint64_t>::max());
  const std::optional<uint64_t> end =
      NonNegativeInteger(offsets[1], std::numeric_limits<uint64_t>::max());
  if (!begin.has_value() || !end.has_value()) {
    return TensorError(
        kInvalid, file, name,
        absl::StrCat("data_offsets must be unsigned integers, got ", offsets.dump()));
  }
  if (*begin > *end) {
    return TensorError(kInvalid, file, name,
                       absl::StrCat("data_offsets [", *begin, ", ", *end, "] has begin > end"));
  }
  info.data_begin = *begin;
  info.data_end = *end;
  if (info.num_bytes() != expected_bytes) {
    return TensorError(
        kInvalid, file, name,
        absl::StrCat("data_offsets [", *begin, ", ", *end, "] span ", info.num_bytes(),
                     " bytes but ", AsAbsl(DTypeName(info.dtype)), " shape [",
                     absl::StrJoin(info.shape, ", "), "] needs ", expected_bytes, " bytes"));
  }
  if (*end > data_size) {
    // The header is self-consistent, so the file most likely lost its tail.
    return TensorError(absl::StatusCode::kDataLoss, file, name,
                       absl::StrCat("data_offsets [", *begin, ", ", *end,
                                    "] extend past the end of the data buffer (", data_size,
                                    " bytes); is the file truncated?"));
  }
  return info;
}

absl::Status ParseMetadata(const json& value, std::string_view file,
                           std::map<std::string, std::string>& metadata) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(file), ": __metadata__ must be an object, got ", value.type_name()));
  }
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(AsAbsl(file), ": __metadata__ value for '",
                                                     key, "' must be a string, got ",
                                                     v.type_name()));
    }
    metadata.emplace(key, v.get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header_json,
                                                         uint64_t data_size,
                                                         std::string_view file_name) {
  absl::StatusOr<json> parsed = io_internal::ParseStrictJson(header_json, file_name);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(file_name), ": safetensors header must be a JSON object, got ",
                     parsed->type_name()));
  }

  SafetensorsHeader header;
  header.tensors.reserve(parsed->size());
  for (const auto& [key, value] : parsed->items()) {
    if (key == kMetadataKey) {
      if (absl::Status s = ParseMetadata(value, file_name, header.metadata); !s.ok()) return s;
      continue;
    }
    absl::StatusOr<TensorInfo> info = ParseTensorEntry(key, value, data_size, file_name);
    if (!info.ok()) return info.status();
    header.tensors.push_back(*std::move(info));
  }

  // Sorting by range makes the overlap check linear and gives loaders file order (sequential
  // reads). Name breaks ties so the order is deterministic for 0-byte tensors.
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return std::tie(a.data_begin, a.data_end, a.name) <
                     std::tie(b.data_begin, b.data_end, b.name);
            });
  // 0-byte tensors occupy nothing, so they cannot overlap; among the rest each must begin at or
  // after the end of the one before it.
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& info : header.tensors) {
    if (info.num_bytes() == 0) continue;
    if (previous != nullptr && info.data_begin < previous->data_end) {
      return TensorError(
          absl::StatusCode::kInvalidArgument, file_name, info.name,
          absl::StrCat("data_offsets [", info.data_begin, ", ", info.data_end, "] overlap tensor '",
                       previous->name, "' [", previous->data_begin, ", ", previous->data_end, "]"));
    }
    previous = &info;
  }
  return header;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    header_ = std::move(other.header_);
    index_ = std::move(other.index_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    file_size_ = std::exchange(other.file_size_, 0);
    data_offset_ = std::exchange(other.data_offset_, 0);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { Unmap(); }

void SafetensorsFile::Unmap() {
  if (mapping_ != nullptr) {
    munmap(const_cast<uint8_t*>(mapping_), file_size_);
    mapping_ = nullptr;
  }
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  // O_NONBLOCK: a FIFO at the path must fail the S_ISREG check below, not hang the open.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open safetensors file '", path, "'"));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat safetensors file '", path, "'"));
  }
  if (absl::Status regular = RequireRegularFile(st.st_mode, path); !regular.ok()) {
    close(fd);
    return regular;
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    close(fd);
    return absl::DataLossError(absl::StrCat(path, ": file is ", file_size,
                                            " bytes, shorter than the 8-byte header length"));
  }
  void* mapping = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int mmap_errno = errno;
  close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) {
    return absl::ErrnoToStatus(mmap_errno, absl::StrCat("cannot mmap '", path, "'"));
  }

  // From here on the object owns the mapping, so every error path unmaps it.
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = static_cast<const uint8_t*>(mapping);
  file->file_size_ = file_size;

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file->mapping_[i];  // LE
  if (header_size > kMaxSafetensorsHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_size,
                                                   " exceeds the limit of ",
                                                   kMaxSafetensorsHeaderSize, " bytes"));
  }
  if (8 + header_size > file_size) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_size,
                                            " extends past the end of the ", file_size,
                                            "-byte file; is the file truncated?"));
  }
  file->data_offset_ = 8 + header_size;

  const std::string_view header_json(reinterpret_cast<const char*>(file->mapping_ + 8),
                                     header_size);
  absl::StatusOr<SafetensorsHeader> header =
      ParseSafetensorsHeader(header_json, file->data_size(), path);
  if (!header.ok()) return header.status();
  file->header_ = *std::move(header);

  file->index_.reserve(file->header_.tensors.size());
  for (size_t i = 0; i < file->header_.tensors.size(); ++i) {
    file->index_.emplace(file->header_.tensors[i].name, i);
  }
  return file;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

absl::Span<const uint8_t> SafetensorsFile::Data(const TensorInfo& info) const {
  // Guard against an info from another file: never hand out bytes outside the mapping.
  if (info.data_begin > info.data_end || info.data_end > data_size()) return {};
  return absl::Span<const uint8_t>(mapping_ + data_offset_ + info.data_begin, info.num_bytes());
}

void SafetensorsFile::DropPages(const TensorInfo& info) const {
  if (info.data_begin > info.data_end || info.data_end > data_size()) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(mapping_ + data_offset_ + info.data_begin);
  const uintptr_t end = reinterpret_cast<uintptr_t>(mapping_ + data_offset_ + info.data_end);
  // Only pages wholly inside the tensor: its neighbours may still be needed.
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (first >= last) return;
  // Advice only: on failure the pages simply stay resident until the file is closed.
  madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace moeserve::engine
