#include "engine/parallel/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moeserve::engine {
namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<std::string> ViaFile(const std::string& path, int rank, const std::string& blob,
                                    std::chrono::milliseconds timeout) {
  namespace fs = std::filesystem;
  if (rank == 0) {
    const std::string temp = absl::StrCat(path, ".tmp.", getpid());
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      out.write(blob.data(), static_cast<std::streamsize>(blob.size()));
      if (!out) return absl::UnavailableError(absl::StrCat("rendezvous: cannot write ", temp));
    }
    std::error_code ec;
    fs::rename(temp, path, ec);  // atomic: readers never see a partial blob
    if (ec) return absl::UnavailableError(absl::StrCat("rendezvous: cannot create ", path));
    return blob;
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      return text.str();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("rendezvous: ", path, " did not appear within ", timeout.count(), " ms"));
}

// Writes or reads exactly n bytes.
bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t sent = send(fd, data, n, MSG_NOSIGNAL);
    if (sent <= 0) return false;
    data += sent;
    n -= static_cast<size_t>(sent);
  }
  return true;
}

absl::StatusOr<std::string> ViaTcp(const std::string& host, const std::string& port, int rank,
                                   int world_size, const std::string& blob,
                                   std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = rank == 0 ? AI_PASSIVE : 0;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous: cannot resolve ", host, ":", port));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  const Clock::time_point deadline = Clock::now() + timeout;
  auto remaining_ms = [&] {
    return static_cast<int>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };

  if (rank == 0) {
    const int listener = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    if (listener < 0) return absl::UnavailableError("rendezvous: socket() failed");
    const int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, found->ai_addr, found->ai_addrlen) != 0 || listen(listener, 64) != 0) {
      const std::string why = std::strerror(errno);
      close(listener);
      return absl::UnavailableError(
          absl::StrCat("rendezvous: cannot listen on ", host, ":", port, ": ", why));
    }
    // Length-prefixed so a peer can tell a complete blob from a dropped connection.
    const uint32_t length = htonl(static_cast<uint32_t>(blob.size()));
    for (int served = 0; served < world_size - 1;) {
      pollfd p{.fd = listener, .events = POLLIN, .revents = 0};
      if (poll(&p, 1, remaining_ms()) <= 0) {
        close(listener);
        return absl::DeadlineExceededError(
            absl::StrCat("rendezvous: ", served, " of ", world_size - 1, " ranks connected to ",
                         host, ":", port, " within ", timeout.count(), " ms"));
      }
      const int peer = accept(listener, nullptr, nullptr);
      if (peer < 0) continue;
      if (SendAll(peer, reinterpret_cast<const char*>(&length), sizeof(length)) &&
          SendAll(peer, blob.data(), blob.size())) {
        ++served;
      }
      close(peer);
    }
    close(listener);
    return blob;
  }

  // Other ranks: retry until rank 0 listens.
  while (true) {
    const int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    if (fd < 0) return absl::UnavailableError("rendezvous: socket() failed");
    if (connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
      std::string received;
      char buffer[512];
      while (true) {
        const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        received.append(buffer, static_cast<size_t>(n));
      }
      close(fd);
      if (received.size() >= sizeof(uint32_t)) {
        uint32_t length = 0;
        std::memcpy(&length, received.data(), sizeof(length));
        length = ntohl(length);
        if (received.size() == sizeof(uint32_t) + length) return received.substr(sizeof(uint32_t));
      }
      return absl::DataLossError(absl::StrCat("rendezvous: truncated blob from ", host, ":", port));
    }
    close(fd);
    if (remaining_ms() == 0) {
      return absl::DeadlineExceededError(absl::StrCat("rendezvous: rank 0 at ", host, ":", port,
                                                      " not reachable within ", timeout.count(),
                                                      " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

absl::StatusOr<std::string> ExchangeBlob(const std::string& address, int rank, int world_size,
                                         const std::string& blob,
                                         std::chrono::milliseconds timeout) {
  if (rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous: rank ", rank, " outside a world of ", world_size));
  }
  if (absl::Status s = ValidateRendezvousAddress(address); !s.ok()) return s;
  if (address.rfind("file:", 0) == 0) return ViaFile(address.substr(5), rank, blob, timeout);
  const std::string host_port = address.substr(4);
  const size_t colon = host_port.rfind(':');
  return ViaTcp(host_port.substr(0, colon), host_port.substr(colon + 1), rank, world_size, blob,
                timeout);
}

absl::Status ValidateRendezvousAddress(const std::string& address) {
  if (address.rfind("file:", 0) == 0) {
    if (address.size() > 5) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous address '", address, "' must be file:PATH"));
  }
  if (address.rfind("tcp:", 0) == 0) {
    const std::string host_port = address.substr(4);
    const size_t colon = host_port.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(host_port.substr(colon + 1), &port) || port < 1 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("rendezvous address '", address, "' must be tcp:HOST:PORT"));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("rendezvous address '", address, "' must start with file: or tcp:"));
}

}  // namespace moeserve::engine
