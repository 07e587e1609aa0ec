// HttpServer (libmicrohttpd) over real sockets on 127.0.0.1, as the metrics port runs it: the
// /metrics response, other paths and methods, HEAD, concurrent scrapes, clients that are
// silent, slow, oversized or vanish; and the answer-later paths the OpenAI port uses: a
// response given from another thread, a streamed body, a client leaving mid-stream, body size
// limits, and many suspended streams on one polling thread.
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/metrics_port.h"

namespace moeserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// A connected TCP client socket, closed on destruction.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    return ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // Everything until the server closes, or what came within `timeout`.
  std::string ReadAll(std::chrono::milliseconds timeout = 10s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buffer[4096];
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{.fd = fd_, .events = POLLIN};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      out.append(buffer, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Sends one request on a fresh connection and returns the whole response.
std::string Request(int port, const std::string& request) {
  Client client(port);
  EXPECT_TRUE(client.connected());
  EXPECT_TRUE(client.Send(request));
  return client.ReadAll();
}

std::string Get(int port, const std::string& path) {
  return Request(
      port,
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nConnection: close\r\n\r\n");
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

constexpr char kBody[] = "# TYPE x_total counter\nx_total 1\n";

std::unique_ptr<HttpServer> StartServer(
    std::function<std::string()> body = [] { return std::string(kBody); },
    HttpServer::Options options = MetricsPortOptions()) {
  auto server = HttpServer::Start("127.0.0.1", 0, std::move(options),
                                  [body = std::move(body)](std::shared_ptr<HttpExchange> exchange) {
                                    ServeMetricsPort(*exchange, body);
                                  });
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, ServesMetricsWithPrometheusContentType) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  const std::string response = Get(server->port(), "/metrics");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response, HasSubstr("\r\nContent-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(response,
              HasSubstr("\r\nContent-Length: " + std::to_string(std::string(kBody).size())));
  EXPECT_EQ(Body(response), kBody);
}

TEST(HttpServerTest, QueryStringIsIgnored) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Body(Get(server->port(), "/metrics?name[]=x")), kBody);
}

TEST(HttpServerTest, BodyIsComputedPerRequest) {
  std::atomic<int> calls = 0;
  auto server = StartServer([&] { return "n " + std::to_string(++calls) + "\n"; });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), "n 1\n");
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), "n 2\n");
}

TEST(HttpServerTest, OtherPathsAre404) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/", "/metric", "/metrics/", "/health", "/metricsx"}) {
    const std::string response = Get(server->port(), path);
    EXPECT_THAT(response, StartsWith("HTTP/1.1 404 Not Found\r\n")) << path;
    EXPECT_THAT(Body(response), Not(HasSubstr("x_total"))) << path;
  }
}

TEST(HttpServerTest, HeadHasHeadersButNoBody) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string response =
      Request(server->port(), "HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(response,
              HasSubstr("\r\nContent-Length: " + std::to_string(std::string(kBody).size())));
  EXPECT_EQ(Body(response), "");
}

TEST(HttpServerTest, OtherMethodsAndGarbageAreRefused) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const std::string post = Request(
      server->port(),
      "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  EXPECT_THAT(post, HasSubstr("\r\nAllow: GET, HEAD\r\n"));
  // Not HTTP: answered 400 or closed, never served.
  EXPECT_THAT(Request(server->port(), "hello\r\n\r\n"), Not(HasSubstr("x_total")));
  EXPECT_THAT(Request(server->port(), "GET /metrics SPDY/3\r\n\r\n"), Not(HasSubstr("x_total")));
  // Still serving afterwards.
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
}

TEST(HttpServerTest, OversizedHeadersAreRefused) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  // Past the per-connection memory limit (libmicrohttpd's 32 KiB default).
  const std::string huge = "GET /metrics HTTP/1.1\r\nX-Filler: " + std::string(64000, 'a');
  Client client(server->port());
  ASSERT_TRUE(client.connected());
  client.Send(huge);  // no end of headers: the limit, not the timeout, must end it
  EXPECT_THAT(client.ReadAll(), StartsWith("HTTP/1.1 4"));  // 413/431, as the library words it
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
}

TEST(HttpServerTest, ConcurrentClientsAllGetTheBody) {
  auto server = StartServer([] { return std::string(200000, 'm'); });  // several TCP segments
  ASSERT_NE(server, nullptr);
  constexpr int kClients = 16;
  std::vector<std::string> responses(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { responses[i] = Get(server->port(), "/metrics"); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_THAT(responses[i], StartsWith("HTTP/1.1 200 OK\r\n")) << i;
    EXPECT_EQ(Body(responses[i]).size(), 200000u) << i;
  }
}

TEST(HttpServerTest, SilentClientDoesNotBlockLaterScrapes) {
  HttpServer::Options limits = MetricsPortOptions();
  limits.inactivity_timeout = std::chrono::seconds(1);
  auto server = StartServer([] { return std::string(kBody); }, limits);
  ASSERT_NE(server, nullptr);
  Client silent(server->port());  // connects and never sends a byte
  ASSERT_TRUE(silent.connected());
  Client slow(server->port());  // sends half a request line and stops
  ASSERT_TRUE(slow.connected());
  slow.Send("GET /met");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
  // At most one request timeout per stalled client ahead of it, with slack for a busy machine.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // Closed at the inactivity timeout, without a response.
  const auto wait = std::chrono::steady_clock::now();
  EXPECT_EQ(silent.ReadAll(10s), "");
  EXPECT_LT(std::chrono::steady_clock::now() - wait, 5s);
}

// Issue 21, row 4: 30 sockets trickling header bytes made one scrape wait 59 s (each held the
// only serving thread for its timeout). Now a scrape is answered while every slow client is
// still waiting for its own request timeout: checked by order, not by the clock.
TEST(HttpServerTest, ScrapeIsAnsweredWhileSlowClientsAreStillPending) {
  HttpServer::Options limits = MetricsPortOptions();
  limits.inactivity_timeout = std::chrono::seconds(30);
  auto server = StartServer([] { return std::string(kBody); }, limits);
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Client>> slow;
  for (int i = 0; i < 30; ++i) {
    slow.push_back(std::make_unique<Client>(server->port()));
    ASSERT_TRUE(slow.back()->connected());
    ASSERT_TRUE(slow.back()->Send("GET /metr"));
  }
  for (int round = 0; round < 3; ++round) {
    for (auto& client : slow) ASSERT_TRUE(client->Send("i"));
    EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody) << round;
  }
  // None of the slow clients has been answered or closed: they were not served before us.
  for (auto& client : slow) EXPECT_EQ(client->ReadAll(50ms), "");
}

TEST(HttpServerTest, ConnectionsBeyondTheCapWaitAndOthersAreServed) {
  auto server = StartServer();  // the metrics port's cap: 256 connections
  ASSERT_NE(server, nullptr);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 256 + 20; ++i) {  // 20 beyond the cap
    held.push_back(std::make_unique<Client>(server->port()));
    ASSERT_TRUE(held.back()->Send("G"));
  }
  std::this_thread::sleep_for(300ms);
  // A held connection that completes its request is served at the cap.
  ASSERT_TRUE(held.front()->Send("ET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(Body(held.front()->ReadAll(5s)), kBody);
  held.erase(held.begin());
  held.clear();  // the trickling clients leave; a new scrape is served
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
}

TEST(HttpServerTest, DefaultTimeoutAlsoReleasesASilentClient) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  Client silent(server->port());
  ASSERT_TRUE(silent.connected());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
}

TEST(HttpServerTest, ClientThatVanishesMidResponseIsHarmless) {
  auto server = StartServer([] { return std::string(8 << 20, 'm'); });  // bigger than buffers
  ASSERT_NE(server, nullptr);
  {
    Client gone(server->port());
    ASSERT_TRUE(gone.connected());
    gone.Send("GET /metrics HTTP/1.1\r\n\r\n");
  }  // closed without reading: the server gets EPIPE/ECONNRESET, not SIGPIPE
  const std::string response = Get(server->port(), "/metrics");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(Body(response).size(), size_t{8 << 20});
}

TEST(HttpServerTest, ThrowingBodyGives500AndKeepsServing) {
  std::atomic<bool> fail = true;
  auto server = StartServer([&]() -> std::string {
    if (fail.exchange(false)) throw std::runtime_error("boom");
    return kBody;
  });
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(Get(server->port(), "/metrics"), StartsWith("HTTP/1.1 500 "));
  EXPECT_EQ(Body(Get(server->port(), "/metrics")), kBody);
}

TEST(HttpServerTest, PortInUseIsAnError) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  auto second = HttpServer::Start("127.0.0.1", first->port(), MetricsPortOptions(),
                                  [](std::shared_ptr<HttpExchange>) {});
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("127.0.0.1:" + std::to_string(first->port())));
}

TEST(HttpServerTest, BadArgumentsAreErrors) {
  EXPECT_FALSE(HttpServer::Start("127.0.0.1", 70000, MetricsPortOptions(),
                                 [](std::shared_ptr<HttpExchange>) {})
                   .ok());
  EXPECT_FALSE(HttpServer::Start("127.0.0.1", 0, MetricsPortOptions(), nullptr).ok());
}

TEST(HttpServerTest, DestructorStopsPromptlyEvenWithAStalledClient) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  Client silent(port);
  ASSERT_TRUE(silent.connected());
  std::this_thread::sleep_for(50ms);  // let the server pick it up
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // The port is released: a new connection is refused.
  Client after(port);
  EXPECT_FALSE(after.connected());
}

// ---------------------------------------------------------------------------------------------
// Answering later, streaming, and clients that leave (the OpenAI port's paths).

std::unique_ptr<HttpServer> StartHandler(HttpServer::Handler handler,
                                         HttpServer::Options options = {}) {
  options.threads = 1;  // one polling thread: suspended connections must not hold it
  auto server = HttpServer::Start("127.0.0.1", 0, std::move(options), std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// The body of a chunked response, de-chunked.
std::string Dechunk(const std::string& body) {
  std::string out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t line_end = body.find("\r\n", at);
    if (line_end == std::string::npos) break;
    const size_t size = std::stoul(body.substr(at, line_end - at), nullptr, 16);
    if (size == 0) break;
    out += body.substr(line_end + 2, size);
    at = line_end + 2 + size + 2;
  }
  return out;
}

TEST(HttpServerTest, ResponseGivenLaterFromAnotherThread) {
  std::vector<std::thread> answerers;
  std::mutex mu;
  auto server = StartHandler([&](std::shared_ptr<HttpExchange> exchange) {
    std::lock_guard lock(mu);
    answerers.emplace_back([exchange] {
      std::this_thread::sleep_for(100ms);
      exchange->Respond({.status = 201,
                         .content_type = "text/plain",
                         .body = "late:" + exchange->request().body});
    });
  });
  ASSERT_NE(server, nullptr);
  const std::string response =
      Request(server->port(),
              "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
  EXPECT_THAT(response, StartsWith("HTTP/1.1 201 "));
  EXPECT_EQ(Body(response), "late:hello");
  std::lock_guard lock(mu);
  for (auto& t : answerers) t.join();
}

// 64 streams at once on one polling thread, each fed by its own producer thread in small
// pieces with pauses: every client gets exactly its bytes, in order.
TEST(HttpServerTest, ManyConcurrentStreamsOnOneThread) {
  std::mutex mu;
  std::vector<std::thread> producers;
  auto server = StartHandler([&](std::shared_ptr<HttpExchange> exchange) {
    exchange->StartStream(200, "text/event-stream");
    std::lock_guard lock(mu);
    producers.emplace_back([exchange] {
      const std::string tag = exchange->request().path;
      for (int i = 0; i < 20; ++i) {
        exchange->Write("data: " + tag + " " + std::to_string(i) + "\n\n");
        std::this_thread::sleep_for(2ms);
      }
      exchange->CloseStream();
    });
  });
  ASSERT_NE(server, nullptr);
  constexpr int kClients = 64;
  std::vector<std::string> bodies(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      bodies[c] = Dechunk(
          Body(Request(server->port(), "GET /s" + std::to_string(c) +
                                           " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")));
    });
  }
  for (auto& t : clients) t.join();
  {
    std::lock_guard lock(mu);
    for (auto& t : producers) t.join();
  }
  for (int c = 0; c < kClients; ++c) {
    std::string expected;
    for (int i = 0; i < 20; ++i)
      expected += "data: /s" + std::to_string(c) + " " + std::to_string(i) + "\n\n";
    EXPECT_EQ(bodies[c], expected) << c;
  }
  EXPECT_EQ(server->open_exchanges(), 0u);
}

TEST(HttpServerTest, ClientLeavingMidStreamIsReportedOnce) {
  std::atomic<int> gone = 0;
  std::shared_ptr<HttpExchange> kept;
  std::mutex mu;
  auto server = StartHandler([&](std::shared_ptr<HttpExchange> exchange) {
    exchange->OnClientGone([&] { ++gone; });
    exchange->StartStream(200, "text/event-stream");
    exchange->Write("data: first\n\n");
    std::lock_guard lock(mu);
    kept = exchange;
  });
  ASSERT_NE(server, nullptr);
  {
    Client client(server->port());
    ASSERT_TRUE(client.Send("GET /s HTTP/1.1\r\nHost: a\r\n\r\n"));
    EXPECT_THAT(client.ReadAll(500ms), HasSubstr("data: first"));
  }  // the client closes while the stream is open
  // The server notices when it next writes.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (gone.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::lock_guard lock(mu);
    if (kept) kept->Write(std::string(4096, 'x'));
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(gone.load(), 1);
  std::lock_guard lock(mu);
  EXPECT_FALSE(kept->Write("more"));  // the producer learns it too
  EXPECT_EQ(gone.load(), 1);
}

TEST(HttpServerTest, BodyLimitsAre413AndServingContinues) {
  HttpServer::Options options;
  options.max_body_bytes = 1000;
  auto server = StartHandler(
      [](std::shared_ptr<HttpExchange> exchange) {
        exchange->Respond({.body = std::to_string(exchange->request().body.size())});
      },
      options);
  ASSERT_NE(server, nullptr);
  // Announced too large: refused before the body is read.
  EXPECT_THAT(
      Request(server->port(), "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"),
      StartsWith("HTTP/1.1 413 "));
  // Chunked and too large: read, dropped, refused.
  const std::string chunk = std::string(600, 'a');
  EXPECT_THAT(
      Request(
          server->port(),
          "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
          "258\r\n" +
              chunk + "\r\n258\r\n" + chunk + "\r\n0\r\n\r\n"),
      StartsWith("HTTP/1.1 413 "));
  const std::string ok =
      Request(server->port(),
              "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" +
                  std::string(1000, 'b'));
  EXPECT_THAT(ok, StartsWith("HTTP/1.1 200 "));
  EXPECT_EQ(Body(ok), "1000");
}

TEST(HttpServerTest, ShutdownAnswersWaitingRequestsWith503) {
  std::vector<std::shared_ptr<HttpExchange>> never_answered;
  std::mutex mu;
  auto server = StartHandler([&](std::shared_ptr<HttpExchange> exchange) {
    std::lock_guard lock(mu);
    never_answered.push_back(exchange);
  });
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  ASSERT_TRUE(client.Send("GET /wait HTTP/1.1\r\nHost: a\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  std::thread stopper([&] { server.reset(); });
  EXPECT_THAT(client.ReadAll(5s), StartsWith("HTTP/1.1 503 "));
  stopper.join();
}

}  // namespace
}  // namespace moeserve::server
