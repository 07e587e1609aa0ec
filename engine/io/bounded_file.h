// Reading a small input file (config.json, tokenizer.json, a TLS key, an expert placement)
// without trusting what is at the path: it must be a regular file — a FIFO, a device such as
// /dev/zero or a directory would hang the load or read without end — and at most `max_bytes`
// long, checked on the open descriptor before anything is buffered (issue 21, rows 6 and 7).
//
// Called by every loader of the engine and by the server's TLS setup. Weight files are mmap'd by
// SafetensorsFile, which makes the same regular-file check itself.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace moeserve::engine {

// Caps used by the loaders; generous next to real files (DeepSeek-V3's tokenizer.json is
// 7.8 MB, its model.safetensors.index.json 8.9 MB, a config.json a few KB).
inline constexpr int64_t kMaxConfigFileBytes = int64_t{16} << 20;
inline constexpr int64_t kMaxTokenizerFileBytes = int64_t{256} << 20;
inline constexpr int64_t kMaxIndexFileBytes = int64_t{256} << 20;
inline constexpr int64_t kMaxPemFileBytes = int64_t{1} << 20;

// The whole file. Errors name the path: NotFound when it does not exist, InvalidArgument when
// it is not a regular file or is larger than max_bytes (with both sizes), Unavailable or
// DataLoss for other open and read failures.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, int64_t max_bytes);

// OK for a regular file; otherwise InvalidArgument "PATH is a FIFO; expected a regular file"
// (the same words ReadRegularFile uses), from the mode of an fstat on the open descriptor.
absl::Status RequireRegularFile(unsigned int st_mode, const std::string& path);

}  // namespace moeserve::engine
