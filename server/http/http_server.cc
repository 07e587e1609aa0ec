#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/http/listen_socket.h"
#include "server/logging.h"

namespace moeserve::server {
namespace {

// Bytes handed to libmicrohttpd per read of a streamed body.
constexpr size_t kStreamBlockBytes = 16 * 1024;

std::string HeaderValue(MHD_Connection* connection, const char* name) {
  const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
  return value != nullptr ? std::string(value) : std::string();
}

std::string PeerAddress(MHD_Connection* connection) {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info == nullptr || info->client_addr == nullptr) return "unknown";
  char text[INET6_ADDRSTRLEN] = {};
  const sockaddr* address = info->client_addr;
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    return absl::StrCat("[", text, "]:", ntohs(v6->sin6_port));
  }
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
  ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
  return absl::StrCat(text, ":", ntohs(v4->sin_port));
}

const char* ErrorType(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

MHD_Response* MakeResponse(const HttpResponse& response) {
  MHD_Response* r = MHD_create_response_from_buffer(
      response.body.size(), const_cast<char*>(response.body.data()), MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return nullptr;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, response.content_type.c_str());
  for (const auto& [name, value] : response.headers) {
    MHD_add_response_header(r, name.c_str(), value.c_str());
  }
  return r;
}

}  // namespace

// libmicrohttpd's C callbacks, as friends of the classes they drive.
struct HttpCallbacks {
  static MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url,
                              const char* method, const char* /*version*/, const char* upload_data,
                              size_t* upload_data_size, void** request_state);
  static void OnCompleted(void* cls, MHD_Connection* connection, void** request_state,
                          MHD_RequestTerminationCode termination);
  static ssize_t ReadStream(void* cls, uint64_t position, char* buffer, size_t max);
  static void FreeStream(void* cls);
  static void Log(void* cls, const char* format, va_list args);
};

// What libmicrohttpd keeps per request between calls of the access handler.
struct HttpServer::Pending {
  std::shared_ptr<HttpExchange> exchange;
  std::string body;
  bool too_large = false;
  bool dispatched = false;
};

HttpResponse JsonError(int status, std::string_view message, std::string_view param) {
  nlohmann::json error = {{"message", std::string(message)},
                          {"type", ErrorType(status)},
                          {"param", nullptr},
                          {"code", status}};
  if (!param.empty()) error["param"] = std::string(param);
  HttpResponse response;
  response.status = status;
  response.body = nlohmann::json{{"error", error}}.dump(-1, ' ', false,
                                                        nlohmann::json::error_handler_t::replace);
  return response;
}

// ---------------------------------------------------------------------------------------------
// HttpExchange

HttpExchange::HttpExchange(HttpServer* server, MHD_Connection* connection, HttpRequest request)
    : server_(server), connection_(connection), request_(std::move(request)) {}

void HttpExchange::Respond(HttpResponse response) {
  std::unique_lock lock(mu_);
  if (state_ != State::kWaiting || finished_) return;
  response_ = std::move(response);
  state_ = State::kResponded;
  ResumeIfSuspended(lock);
}

void HttpExchange::StartStream(int status, std::string content_type, HttpHeaders headers) {
  std::unique_lock lock(mu_);
  if (state_ != State::kWaiting || finished_) return;
  response_.status = status;
  response_.content_type = std::move(content_type);
  response_.headers = std::move(headers);
  state_ = State::kStreaming;
  ResumeIfSuspended(lock);
}

bool HttpExchange::Write(std::string_view bytes) {
  std::unique_lock lock(mu_);
  if (finished_) return false;
  if (stream_closed_ || (state_ != State::kStreaming && state_ != State::kQueued)) return true;
  stream_buffer_.append(bytes.data(), bytes.size());
  ResumeIfSuspended(lock);
  return true;
}

void HttpExchange::CloseStream() {
  std::unique_lock lock(mu_);
  if (stream_closed_) return;
  stream_closed_ = true;
  ResumeIfSuspended(lock);
}

void HttpExchange::OnClientGone(std::function<void()> callback) {
  std::unique_lock lock(mu_);
  if (!finished_) {
    on_client_gone_ = std::move(callback);
    return;
  }
  const bool gone = client_gone_;
  lock.unlock();
  if (gone) callback();
}

void HttpExchange::ResumeIfSuspended(std::unique_lock<std::mutex>& lock) {
  if (!suspended_) return;
  suspended_ = false;
  lock.unlock();
  // A suspended connection is neither timed out nor closed by libmicrohttpd (and the server
  // resumes every one before stopping), so it is still valid here.
  MHD_resume_connection(connection_);
}

bool HttpExchange::QueueOrSuspendOnHttpThread() {
  std::unique_lock lock(mu_);
  MHD_Response* response = nullptr;
  switch (state_) {
    case State::kWaiting:
      suspended_ = true;
      MHD_suspend_connection(connection_);
      return true;
    case State::kQueued:
      return true;  // libmicrohttpd does not call back once a response is queued
    case State::kResponded:
      response = MakeResponse(response_);
      response_.body.clear();
      break;
    case State::kStreaming: {
      auto* self = new std::shared_ptr<HttpExchange>(shared_from_this());
      response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, kStreamBlockBytes,
                                                   &HttpCallbacks::ReadStream, self,
                                                   &HttpCallbacks::FreeStream);
      if (response == nullptr) {
        delete self;
        break;
      }
      MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                              response_.content_type.c_str());
      MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
      for (const auto& [name, value] : response_.headers) {
        MHD_add_response_header(response, name.c_str(), value.c_str());
      }
      break;
    }
  }
  state_ = State::kQueued;
  const unsigned status = static_cast<unsigned>(response_.status);
  lock.unlock();
  if (response == nullptr) return false;
  const MHD_Result queued = MHD_queue_response(connection_, status, response);
  MHD_destroy_response(response);  // reference counted: freed once sent
  return queued == MHD_YES;
}

long HttpExchange::ReadStreamOnHttpThread(char* buffer, size_t max) {
  std::lock_guard lock(mu_);
  if (stream_offset_ < stream_buffer_.size()) {
    const size_t n = std::min(max, stream_buffer_.size() - stream_offset_);
    std::memcpy(buffer, stream_buffer_.data() + stream_offset_, n);
    stream_offset_ += n;
    if (stream_offset_ == stream_buffer_.size()) {
      stream_buffer_.clear();
      stream_offset_ = 0;
    }
    return static_cast<long>(n);
  }
  if (stream_closed_ || finished_) return MHD_CONTENT_READER_END_OF_STREAM;
  // Nothing to send yet: park the connection until Write or CloseStream resumes it.
  suspended_ = true;
  MHD_suspend_connection(connection_);
  return 0;
}

void HttpExchange::FinishOnHttpThread(bool completed) {
  std::unique_lock lock(mu_);
  finished_ = true;
  suspended_ = false;
  client_gone_ = !completed;
  std::function<void()> callback;
  if (client_gone_) callback = std::move(on_client_gone_);
  on_client_gone_ = nullptr;
  stream_buffer_.clear();
  lock.unlock();
  if (callback) callback();
}

void HttpExchange::Abandon() {
  std::unique_lock lock(mu_);
  if (state_ == State::kWaiting) {
    response_ = JsonError(503, "the server is shutting down");
    state_ = State::kResponded;
  }
  stream_closed_ = true;
  ResumeIfSuspended(lock);
}

// ---------------------------------------------------------------------------------------------
// Callbacks

MHD_Result HttpCallbacks::OnRequest(void* cls, MHD_Connection* connection, const char* url,
                                    const char* method, const char* /*version*/,
                                    const char* upload_data, size_t* upload_data_size,
                                    void** request_state) {
  auto* server = static_cast<HttpServer*>(cls);
  auto* pending = static_cast<HttpServer::Pending*>(*request_state);
  if (pending == nullptr) {
    pending = new HttpServer::Pending;
    pending->exchange = server->NewExchange(connection, url, method);
    *request_state = pending;
    // Refuse an announced oversized body before any of it is read.
    uint64_t length = 0;
    const std::string declared = HeaderValue(connection, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!declared.empty() && absl::SimpleAtoi(declared, &length) &&
        length > server->options_.max_body_bytes) {
      pending->dispatched = true;
      pending->exchange->Respond(
          JsonError(413, absl::StrCat("the request body has ", length, " bytes; at most ",
                                      server->options_.max_body_bytes, " are accepted")));
      return pending->exchange->QueueOrSuspendOnHttpThread() ? MHD_YES : MHD_NO;
    }
    if (!server->options_.tls.client_ca_pem.empty() &&
        !server->ClientCertificateVerified(connection)) {
      pending->dispatched = true;
      pending->exchange->Respond(JsonError(
          401, "a client certificate signed by the server's --tls-client-ca is required"));
      return pending->exchange->QueueOrSuspendOnHttpThread() ? MHD_YES : MHD_NO;
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    if (!pending->too_large) {
      if (pending->body.size() + *upload_data_size > server->options_.max_body_bytes) {
        pending->too_large = true;  // the rest is read and dropped; answered 413 at the end
        pending->body.clear();
        pending->body.shrink_to_fit();
      } else {
        pending->body.append(upload_data, *upload_data_size);
      }
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (!pending->dispatched) {
    pending->dispatched = true;
    if (pending->too_large) {
      pending->exchange->Respond(
          JsonError(413, absl::StrCat("the request body is larger than ",
                                      server->options_.max_body_bytes, " bytes")));
    } else {
      pending->exchange->request_.body = std::move(pending->body);
      try {
        server->handler_(pending->exchange);
      } catch (const std::exception& e) {
        // A handler's bug must not unwind through libmicrohttpd's C frames.
        LogError(absl::StrCat(server->options_.name, " ", pending->exchange->request_.path, ": ",
                              e.what()));
        pending->exchange->Respond(JsonError(500, "internal error"));
      }
    }
  }
  return pending->exchange->QueueOrSuspendOnHttpThread() ? MHD_YES : MHD_NO;
}

void HttpCallbacks::OnCompleted(void* cls, MHD_Connection* /*connection*/, void** request_state,
                                MHD_RequestTerminationCode termination) {
  auto* server = static_cast<HttpServer*>(cls);
  auto* pending = static_cast<HttpServer::Pending*>(*request_state);
  if (pending == nullptr) return;
  *request_state = nullptr;
  HttpExchange& exchange = *pending->exchange;
  {
    std::lock_guard lock(server->mu_);
    server->open_.erase(&exchange);
  }
  exchange.FinishOnHttpThread(termination == MHD_REQUEST_TERMINATED_COMPLETED_OK);
  if (pending->dispatched && server->observer_) {
    int status = 0;
    {
      std::lock_guard lock(exchange.mu_);
      status = exchange.state_ == HttpExchange::State::kQueued ? exchange.response_.status : 499;
    }
    server->observer_(exchange.endpoint(), status);
  }
  delete pending;
}

ssize_t HttpCallbacks::ReadStream(void* cls, uint64_t /*position*/, char* buffer, size_t max) {
  return (*static_cast<std::shared_ptr<HttpExchange>*>(cls))->ReadStreamOnHttpThread(buffer, max);
}

void HttpCallbacks::FreeStream(void* cls) {
  delete static_cast<std::shared_ptr<HttpExchange>*>(cls);
}

void HttpCallbacks::Log(void* cls, const char* format, va_list args) {
  char line[512];
  std::vsnprintf(line, sizeof(line), format, args);
  std::string text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  LogDebug(absl::StrCat(static_cast<HttpServer*>(cls)->options_.name, " (libmicrohttpd): ", text));
}

// ---------------------------------------------------------------------------------------------
// HttpServer

HttpServer::HttpServer(Options options, Handler handler, Observer observer, int port)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      observer_(std::move(observer)),
      port_(port) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& host, int port,
                                                              Options options, Handler handler,
                                                              Observer observer) {
  if (!handler) return absl::InvalidArgumentError("the HTTP handler is empty");
  const bool tls = !options.tls.cert_chain_pem.empty();
  if (tls && options.tls.private_key_pem.empty()) {
    return absl::InvalidArgumentError("TLS needs a private key with the certificate");
  }
  absl::StatusOr<ListenSocket> socket = BindListenSocket(host, port);
  if (!socket.ok()) return socket.status();
  std::unique_ptr<HttpServer> server(
      new HttpServer(std::move(options), std::move(handler), std::move(observer), socket->port));
  const Options& o = server->options_;

  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG;
  if (tls) flags |= MHD_USE_TLS;
  if (socket->ipv6) flags |= MHD_USE_IPv6;
  std::vector<MHD_OptionItem> items = {
      {MHD_OPTION_LISTEN_SOCKET, socket->fd, nullptr},
      {MHD_OPTION_THREAD_POOL_SIZE, static_cast<intptr_t>(std::max(1, o.threads)), nullptr},
      {MHD_OPTION_CONNECTION_LIMIT, static_cast<intptr_t>(o.max_connections), nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, static_cast<intptr_t>(o.inactivity_timeout.count()), nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&HttpCallbacks::OnCompleted),
       server.get()},
      {MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&HttpCallbacks::Log), server.get()},
  };
  if (tls) {
    items.push_back(
        {MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(o.tls.cert_chain_pem.c_str())});
    items.push_back(
        {MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(o.tls.private_key_pem.c_str())});
    if (!o.tls.client_ca_pem.empty()) {
      items.push_back(
          {MHD_OPTION_HTTPS_MEM_TRUST, 0, const_cast<char*>(o.tls.client_ca_pem.c_str())});
    }
  }
  items.push_back({MHD_OPTION_END, 0, nullptr});
  server->daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &HttpCallbacks::OnRequest,
                                     server.get(), MHD_OPTION_ARRAY, items.data(), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    ::close(socket->fd);
    return absl::InternalError(absl::StrCat("cannot start the ", o.name, " server on ", host, ":",
                                            socket->port,
                                            tls ? " (are the TLS files a valid PEM pair?)" : ""));
  }
  return server;
}

HttpServer::~HttpServer() {
  if (daemon_ == nullptr) return;
  {
    std::lock_guard lock(mu_);
    for (HttpExchange* exchange : open_) exchange->Abandon();
  }
  // Let the resumed connections send their last bytes, briefly.
  WaitForOpenExchanges(std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
  {
    std::lock_guard lock(mu_);
    for (HttpExchange* exchange : open_) exchange->Abandon();
  }
  MHD_stop_daemon(daemon_);
}

std::shared_ptr<HttpExchange> HttpServer::NewExchange(MHD_Connection* connection, const char* url,
                                                      const char* method) {
  HttpRequest request;
  request.method = method != nullptr ? method : "";
  request.path = url != nullptr ? url : "";
  if (const size_t query = request.path.find('?'); query != std::string::npos) {
    request.path.resize(query);
  }
  request.authorization = HeaderValue(connection, MHD_HTTP_HEADER_AUTHORIZATION);
  request.content_type = HeaderValue(connection, MHD_HTTP_HEADER_CONTENT_TYPE);
  request.peer = PeerAddress(connection);
  auto exchange = std::make_shared<HttpExchange>(this, connection, std::move(request));
  std::lock_guard lock(mu_);
  open_.insert(exchange.get());
  return exchange;
}

bool HttpServer::ClientCertificateVerified(MHD_Connection* connection) const {
  const MHD_ConnectionInfo* info =
      MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (info == nullptr || info->tls_session == nullptr) return false;
  auto session = static_cast<gnutls_session_t>(info->tls_session);
  unsigned int list_size = 0;
  if (gnutls_certificate_get_peers(session, &list_size) == nullptr || list_size == 0) return false;
  unsigned int verify_status = 0;
  return gnutls_certificate_verify_peers2(session, &verify_status) == GNUTLS_E_SUCCESS &&
         verify_status == 0;
}

size_t HttpServer::open_exchanges() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

bool HttpServer::WaitForOpenExchanges(std::chrono::steady_clock::time_point deadline) const {
  while (open_exchanges() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace moeserve::server
