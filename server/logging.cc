#include "server/logging.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"
#include "grpc/support/log.h"

namespace moeserve::server {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return 'D';
    case LogLevel::kInfo:
      return 'I';
    case LogLevel::kWarning:
      return 'W';
    case LogLevel::kError:
      return 'E';
  }
  return '?';
}

void ProtobufLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  Log(level == google::protobuf::LOGLEVEL_FATAL ? LogLevel::kError : LogLevel::kDebug,
      absl::StrCat("protobuf ", filename, ":", line, ": ", message));
}

void GrpcLogFunction(gpr_log_func_args* args) {
  Log(LogLevel::kDebug,
      absl::StrCat("grpc ", args->file != nullptr ? args->file : "?", ":", args->line, ": ",
                   args->message != nullptr ? args->message : ""));
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warning") return LogLevel::kWarning;
  if (name == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-level must be debug, info, warning or error, got '",
                   absl::string_view(name.data(), name.size()), "'"));
}

void SetLogLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= min_level.load(); }

void Log(LogLevel level, std::string_view message) {
  if (!LogEnabled(level)) return;
  const std::string time =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  // One fwrite per line: stdio locks the stream, so lines from threads never interleave.
  const std::string line =
      absl::StrCat(time, " ", std::string(1, LevelLetter(level)),
                   " moeserve: ", absl::string_view(message.data(), message.size()), "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

void RouteProtobufLogsToDebug() { google::protobuf::SetLogHandler(&ProtobufLogHandler); }

void RouteGrpcLogsToDebug() { gpr_set_log_function(&GrpcLogFunction); }

}  // namespace moeserve::server
