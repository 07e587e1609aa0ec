// The /metrics reader's HTTP client against a one-shot loopback server.
#include "clients/bench/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

// Accepts one connection on 127.0.0.1:<ephemeral>, reads the request, sends `response`.
class OneShotServer {
 public:
  explicit OneShotServer(std::string response) : response_(std::move(response)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    listen(fd_, 1);
    socklen_t length = sizeof address;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      const int client = accept(fd_, nullptr, nullptr);
      char buffer[4096];
      const ssize_t n = recv(client, buffer, sizeof buffer, 0);
      if (n > 0) request_.assign(buffer, static_cast<size_t>(n));
      send(client, response_.data(), response_.size(), MSG_NOSIGNAL);
      close(client);
    });
  }
  ~OneShotServer() {
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  const std::string& request() const { return request_; }  // after the GET returned

 private:
  std::string response_;
  std::string request_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(HttpGetTest, ParsesUrlsWithAndWithoutSchemeAndPath) {
  absl::StatusOr<HttpUrl> url = ParseHttpUrl("http://127.0.0.1:9400/metrics");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, "9400");
  EXPECT_EQ(url->path, "/metrics");
  url = ParseHttpUrl("localhost:9400");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->path, "/metrics");
  url = ParseHttpUrl("http://[::1]:81/x");
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, "81");
  EXPECT_FALSE(ParseHttpUrl("https://example.com/metrics").ok());
}

TEST(HttpGetTest, ReturnsTheBodyOfA200) {
  OneShotServer server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nmoeserve_x 1\n");
  absl::StatusOr<std::string> body =
      HttpGet("http://127.0.0.1:" + std::to_string(server.port()) + "/metrics");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, "moeserve_x 1\n");
}

TEST(HttpGetTest, DecodesAChunkedBody) {
  OneShotServer server(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n");
  absl::StatusOr<std::string> body = HttpGet("127.0.0.1:" + std::to_string(server.port()));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, "abcdefg");
}

TEST(HttpGetTest, ANon200AnswerIsAnErrorQuotingTheStatusLine) {
  OneShotServer server("HTTP/1.1 404 Not Found\r\n\r\n");
  absl::StatusOr<std::string> body = HttpGet("127.0.0.1:" + std::to_string(server.port()) + "/x");
  ASSERT_FALSE(body.ok());
  EXPECT_NE(body.status().message().find("404"), std::string::npos);
}

TEST(HttpGetTest, NobodyListeningIsAnError) {
  // Bind and close a socket to get a port that is very likely free.
  int port = 0;
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
    close(fd);
  }
  EXPECT_FALSE(HttpGet("127.0.0.1:" + std::to_string(port), 2.0).ok());
}

}  // namespace
}  // namespace moeserve::bench
