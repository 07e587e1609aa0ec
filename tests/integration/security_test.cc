// The real server facing untrusted clients: the API key (every Moeserve RPC, health open), TLS
// and mutual TLS with certificates made by the openssl command for this test, the cap on open
// Generate streams, the message size limit, and prompts kept out of the info-level log.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/integration/server_test_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

namespace fs = std::filesystem;
using grpc::health::v1::HealthCheckResponse;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

v1::GenerateRequest Greedy(const std::string& text, uint32_t max_tokens) {
  v1::GenerateRequest request;
  request.set_text(text);
  request.mutable_sampling_params()->set_temperature(0.0f);
  request.mutable_sampling_params()->set_max_tokens(max_tokens);
  request.mutable_sampling_params()->set_ignore_eos(true);
  return request;
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA,
// plus a second CA that signed neither (made once per test binary).
struct Certificates {
  fs::path dir;
  fs::path ca, server_cert, server_key, client_cert, client_key, other_ca;
};

const Certificates& TestCertificates() {
  static const Certificates* certs = [] {
    auto* c = new Certificates;
    c->dir = fs::path(::testing::TempDir()) / absl::StrCat("moeserve_tls_", getpid());
    fs::create_directories(c->dir);
    const std::string d = c->dir.string();
    const std::string script = absl::StrCat(
        "set -e; cd '", d, "';",
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=moeserve-test-ca",
        " -keyout ca.key -out ca.pem 2>/dev/null;",
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca",
        " -keyout other.key -out other_ca.pem 2>/dev/null;",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext;",
        "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key",
        " -out server.csr 2>/dev/null;",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2",
        " -extfile server.ext -out server.pem 2>/dev/null;",
        "openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key",
        " -out client.csr 2>/dev/null;",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2",
        " -out client.pem 2>/dev/null");
    EXPECT_EQ(std::system(("bash -c \"" + script + "\"").c_str()), 0) << "openssl failed";
    c->ca = c->dir / "ca.pem";
    c->other_ca = c->dir / "other_ca.pem";
    c->server_cert = c->dir / "server.pem";
    c->server_key = c->dir / "server.key";
    c->client_cert = c->dir / "client.pem";
    c->client_key = c->dir / "client.key";
    return c;
  }();
  return *certs;
}

std::shared_ptr<grpc::Channel> TlsChannel(const std::string& target, const fs::path& ca,
                                          const fs::path& cert = {}, const fs::path& key = {}) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(ca);
  if (!cert.empty()) {
    ssl.pem_cert_chain = ReadFile(cert);
    ssl.pem_private_key = ReadFile(key);
  }
  return grpc::CreateChannel(target, grpc::SslCredentials(ssl));
}

grpc::StatusCode ModelInfoCode(grpc::Channel& channel, const std::string& bearer = "") {
  auto stub = v1::Moeserve::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!bearer.empty()) context.AddMetadata("authorization", bearer);
  v1::GetModelInfoResponse info;
  return stub->GetModelInfo(&context, {}, &info).error_code();
}

// Runs moeserve-cli with `args`; returns its exit status and leaves its output in `output`.
int RunCli(const std::string& args, std::string* output) {
  const fs::path out =
      fs::path(::testing::TempDir()) / absl::StrCat("moeserve_security_cli_", getpid());
  const std::string command = absl::StrCat(MOESERVE_BINARY_DIR, "/clients/cli/moeserve-cli ", args,
                                           " > '", out.string(), "' 2>&1");
  const int status = std::system(command.c_str());
  *output = ReadFile(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(SecurityTest, ApiKeyGuardsEveryRpcButHealth) {
  const std::string key = "s3cret-key-0123456789";
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(),
                           {"--model", TestCheckpointDir("tiny-v3", false), "--api-key", key}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  EXPECT_EQ(HealthStatus(*channel), HealthCheckResponse::SERVING);

  for (const std::string& bearer :
       {std::string(), std::string("Bearer wrong"), absl::StrCat("Bearer ", key, "x"),
        absl::StrCat("Basic ", key), absl::StrCat("Bearer ", key.substr(0, key.size() - 1))}) {
    SCOPED_TRACE(bearer);
    EXPECT_EQ(ModelInfoCode(*channel, bearer), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext context;
    if (!bearer.empty()) context.AddMetadata("authorization", bearer);
    auto reader = stub->Generate(&context, Greedy("Hello", 4));
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext tokenize_context, server_info_context, abort_context;
    for (grpc::ClientContext* c : {&tokenize_context, &server_info_context, &abort_context}) {
      if (!bearer.empty()) c->AddMetadata("authorization", bearer);
    }
    v1::TokenizeRequest tokenize;
    tokenize.set_text("Hello");
    v1::TokenizeResponse tokens;
    EXPECT_EQ(stub->Tokenize(&tokenize_context, tokenize, &tokens).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::GetServerInfoResponse server_info;
    EXPECT_EQ(stub->GetServerInfo(&server_info_context, {}, &server_info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    v1::AbortRequest abort;
    abort.add_request_ids("nobody");
    v1::AbortResponse aborted;
    EXPECT_EQ(stub->Abort(&abort_context, abort, &aborted).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }

  EXPECT_EQ(ModelInfoCode(*channel, absl::StrCat("Bearer ", key)), grpc::StatusCode::OK);
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", key));
  auto reader = stub->Generate(&context, Greedy("Hello", 4));
  v1::GenerateResponse response;
  int chunks = 0;
  while (reader->Read(&response)) chunks += response.has_chunk();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_GT(chunks, 0);

  // The CLI sends the key from its flag or from MOESERVE_API_KEY.
  std::string output;
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(), " info"), &output), 1) << output;
  EXPECT_NE(output.find("UNAUTHENTICATED"), std::string::npos) << output;
  EXPECT_EQ(
      RunCli(absl::StrCat("--target ", server.target(), " --api-key ", key, " info"), &output), 0)
      << output;
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(), " health"), &output), 0) << output;
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(),
                                " generate --max-tokens 3 --temperature 0 Hello"),
                   &output),
            1);
  setenv("MOESERVE_API_KEY", key.c_str(), 1);
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(),
                                " generate --max-tokens 3 --temperature 0 Hello"),
                   &output),
            0)
      << output;
  unsetenv("MOESERVE_API_KEY");
  EXPECT_EQ(server.Stop(), 0);
  // The key never reaches the log.
  EXPECT_EQ(server.Log().find(key), std::string::npos);
}

TEST(SecurityTest, TlsServesOnlyTlsClientsThatTrustTheCa) {
  const Certificates& certs = TestCertificates();
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(),
                           {"--model", TestCheckpointDir("tiny-v3", false), "--tls-cert",
                            certs.server_cert.string(), "--tls-key", certs.server_key.string()}))
      << server.error();
  EXPECT_EQ(ModelInfoCode(*TlsChannel(server.target(), certs.ca)), grpc::StatusCode::OK);
  EXPECT_EQ(ModelInfoCode(*MakeChannel(server.target())), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ModelInfoCode(*TlsChannel(server.target(), certs.other_ca)),
            grpc::StatusCode::UNAVAILABLE);

  std::string output;
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(), " --tls-ca ", certs.ca.string(),
                                " generate --max-tokens 3 --temperature 0 Hello"),
                   &output),
            0)
      << output;
  EXPECT_EQ(
      RunCli(absl::StrCat("--target ", server.target(), " --tls-ca ", certs.ca.string(), " health"),
             &output),
      0)
      << output;
  EXPECT_EQ(server.Stop(), 0);
}

TEST(SecurityTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  const Certificates& certs = TestCertificates();
  ServerProcess server;
  ASSERT_TRUE(server.Start(
      ServerBinary(),
      {"--model", TestCheckpointDir("tiny-v3", false), "--tls-cert", certs.server_cert.string(),
       "--tls-key", certs.server_key.string(), "--tls-client-ca", certs.ca.string()}))
      << server.error();
  EXPECT_EQ(
      ModelInfoCode(*TlsChannel(server.target(), certs.ca, certs.client_cert, certs.client_key)),
      grpc::StatusCode::OK);
  EXPECT_NE(ModelInfoCode(*TlsChannel(server.target(), certs.ca)), grpc::StatusCode::OK);
  // A certificate the client made itself is not enough.
  EXPECT_NE(ModelInfoCode(
                *TlsChannel(server.target(), certs.ca, certs.other_ca, certs.dir / "other.key")),
            grpc::StatusCode::OK);
  std::string output;
  EXPECT_EQ(RunCli(absl::StrCat("--target ", server.target(), " --tls-ca ", certs.ca.string(),
                                " --tls-cert ", certs.client_cert.string(), " --tls-key ",
                                certs.client_key.string(), " info"),
                   &output),
            0)
      << output;
  EXPECT_EQ(server.Stop(), 0);
}

TEST(SecurityTest, BadTlsFilesAreStartupErrorsNamingTheFlag) {
  const fs::path dir = fs::path(::testing::TempDir()) / absl::StrCat("moeserve_badtls_", getpid());
  fs::create_directories(dir);
  std::ofstream(dir / "not_pem.txt") << "hello";
  const Certificates& certs = TestCertificates();
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--tls-cert", (dir / "missing.pem").string(), "--tls-key", certs.server_key.string()},
            "--tls-cert: cannot open"},
           {{"--tls-cert", certs.server_cert.string(), "--tls-key", (dir / "not_pem.txt").string()},
            "--tls-key: "},
           {{"--tls-cert", certs.server_cert.string()}, "--tls-cert and --tls-key"},
           {{"--tls-client-ca", certs.ca.string()}, "--tls-client-ca needs"},
       }) {
    std::vector<std::string> args = {"--model", TestCheckpointDir("tiny-v3", false)};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    ServerProcess server;
    EXPECT_FALSE(server.Start(ServerBinary(), args, std::chrono::seconds(30)));
    EXPECT_NE(server.error().find(c.expected), std::string::npos) << server.error();
  }
}

TEST(SecurityTest, OpenStreamsBeyondTheCapAreRefusedAndOthersContinue) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(), {"--model", TestCheckpointDir("tiny-v3", false),
                                            "--max-concurrent-streams", "2"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  // Two long streams held open: each has delivered its first chunk, so both are running.
  grpc::ClientContext first_context, second_context;
  auto first = stub->Generate(&first_context, Greedy("one", 3000));
  auto second = stub->Generate(&second_context, Greedy("two", 3000));
  v1::GenerateResponse response;
  ASSERT_TRUE(first->Read(&response));
  ASSERT_TRUE(second->Read(&response));

  const StreamResult refused = Generate(*stub, Greedy("three", 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_NE(refused.status.error_message().find("--max-concurrent-streams"), std::string::npos);

  first_context.TryCancel();
  second_context.TryCancel();
  while (first->Read(&response)) {
  }
  while (second->Read(&response)) {
  }
  first->Finish();
  second->Finish();
  ASSERT_TRUE(WaitUntilIdle(*stub));
  // The slots are free again.
  const StreamResult after = Generate(*stub, Greedy("four", 4));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.token_ids.size(), 4u);
  EXPECT_EQ(server.Stop(), 0);
}

TEST(SecurityTest, MessagesOverTheLimitAreRefusedAndPromptsStayOutOfTheLog) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(), {"--model", TestCheckpointDir("tiny-v3", false),
                                            "--max-message-bytes", "2048"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  const StreamResult too_big = Generate(*stub, Greedy(std::string(4096, 'a'), 2));
  EXPECT_EQ(too_big.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  const std::string marker = "zebra-umbrella-7431";
  const StreamResult ok = Generate(*stub, Greedy(absl::StrCat("secret prompt ", marker), 2));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  const StreamResult invalid = Generate(*stub, Greedy(absl::StrCat(marker, "\xff"), 2));
  EXPECT_EQ(invalid.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server.Stop(), 0);
  EXPECT_EQ(server.Log().find(marker), std::string::npos) << server.Log();
}

}  // namespace
}  // namespace moeserve::testing
