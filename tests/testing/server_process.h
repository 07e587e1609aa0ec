// Starts the real `moeserve` binary for integration tests and stops it with SIGTERM.
//
// The server binds 127.0.0.1 port 0 for gRPC and metrics and writes the ports it got, as
// {"grpc_port": N, "metrics_port": M, "http_port": H}, to --port-file once it is SERVING; Start
// waits for that file. stdout and stderr go to a log file whose path the test can print on failure.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace moeserve::testing {

// The `moeserve` binary of this build (integration tests depend on its target).
inline const std::string& ServerBinary() {
  static const std::string path = std::string(MOESERVE_BINARY_DIR) + "/server/moeserve";
  return path;
}

class ServerProcess {
 public:
  // Runs `binary` with `args` plus --host 127.0.0.1 --port 0 --metrics-port 0 --port-file.
  // Returns false (with `error()` set) if it exits or is not ready within `timeout`.
  bool Start(const std::string& binary, std::vector<std::string> args,
             std::chrono::seconds timeout = std::chrono::seconds(60)) {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::path(::testing::TempDir()) /
        ("moeserve_server_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(dir);
    fs::create_directories(dir);
    port_file_ = (dir / "ports.json").string();
    log_file_ = (dir / "server.log").string();
    for (const char* a :
         {"--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--http-port", "-1"}) {
      args.push_back(a);
    }
    args.push_back("--port-file");
    args.push_back(port_file_);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      // A server outlives no test process, even one that stopped at a failed ASSERT.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int fd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(binary.c_str()));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;  // Stop() returns it
        error_ = "server exited during startup; log:\n" + Log();
        return false;
      }
      std::ifstream in(port_file_);
      if (in) {
        const auto ports = nlohmann::json::parse(in, nullptr, false);
        if (ports.is_object() && ports.contains("grpc_port") && ports.contains("metrics_port")) {
          grpc_port_ = ports["grpc_port"];
          metrics_port_ = ports["metrics_port"];
          http_port_ = ports.value("http_port", 0);
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    error_ = "server not ready in time; log:\n" + Log();
    return false;
  }

  // Sends SIGTERM and waits; returns the exit status (or -1 if killed by a signal).
  int Stop(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    if (pid_ <= 0) return exit_status_;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_status_;
  }

  ~ServerProcess() { Stop(); }

  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }  // the OpenAI API (--http-port -1: ephemeral)
  pid_t pid() const { return pid_; }
  const std::string& error() const { return error_; }
  std::string Log() const {
    std::ifstream in(log_file_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  std::string port_file_;
  std::string log_file_;
  std::string error_;
};

}  // namespace moeserve::testing
