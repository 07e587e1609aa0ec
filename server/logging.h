// The server's log: one line per event on stderr, filtered by --log-level.
//
// Abseil 20220623 (Debian 12) predates absl/log, and the engine logs nothing, so the server
// keeps this small sink of its own: main.cc, the shutdown path and the RPC layer report
// startup, drain and per-request failures through it. Thread-safe (one write per line).
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

namespace moeserve::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug" | "info" | "warning" | "error".
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes "2025-01-31T12:00:00.123Z I moeserve: message" when `level` passes the filter.
void Log(LogLevel level, std::string_view message);
inline void LogDebug(std::string_view message) { Log(LogLevel::kDebug, message); }
inline void LogInfo(std::string_view message) { Log(LogLevel::kInfo, message); }
inline void LogWarning(std::string_view message) { Log(LogLevel::kWarning, message); }
inline void LogError(std::string_view message) { Log(LogLevel::kError, message); }

// protobuf logs an ERROR line for every request whose string field is not valid UTF-8; a
// client could flood stderr with them. Routes protobuf's messages to our log at debug level
// (fatal ones stay fatal).
void RouteProtobufLogsToDebug();

// gRPC core writes multi-line error dumps of its own (a port in use prints several before our
// one-line message; a failing accept prints one per attempt). Routes them to our log at debug
// level, so the user reads our message first and `--log-level debug` still shows gRPC's.
void RouteGrpcLogsToDebug();

}  // namespace moeserve::server
