#include "bench/bench_report.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

namespace moeserve::bench {
namespace {

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

std::string GitCommit() {
  // A binary carried to a GPU host has no checkout to ask git; run_all.sh passes the commit.
  if (const char* commit = std::getenv("MOESERVE_COMMIT"); commit != nullptr && *commit != 0) {
    return commit;
  }
  const std::string command =
      std::string("git -C '") + MOESERVE_SOURCE_DIR + "' rev-parse --short HEAD 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "unknown";
  char buffer[64] = {};
  const bool ok = std::fgets(buffer, sizeof buffer, pipe) != nullptr;
  pclose(pipe);
  std::string commit = ok ? buffer : "unknown";
  while (!commit.empty() && (commit.back() == '\n' || commit.back() == '\r')) commit.pop_back();
  return commit.empty() ? "unknown" : commit;
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace

nlohmann::json MeasurementContext() {
  const unsigned cores = std::thread::hardware_concurrency();
  return {{"device", CpuModelName() + " (" + std::to_string(cores) + " cores)"},
          {"date", UtcNow()},
          {"commit", GitCommit()}};
}

bool WriteReport(const std::string& path, const nlohmann::json& report) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  std::ofstream out(path);
  out << report.dump(2) << "\n";
  out.close();
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  std::printf("wrote %s\n", path.c_str());
  return true;
}

}  // namespace moeserve::bench
