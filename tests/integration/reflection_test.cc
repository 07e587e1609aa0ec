// Server reflection of the real `moeserve`, driven the way grpcurl drives it, once for each
// package (grpc.reflection.v1 and grpc.reflection.v1alpha): `list` names every exposed service;
// `describe` fetches each service's file by symbol (with its imports), builds the descriptors in
// a fresh pool that knows nothing of this binary's generated code, and resolves every method's
// input and output types; a call to grpc.health.v1.Health/Check is made with messages built
// from the reflected descriptors alone. Lookups by file name and the NOT_FOUND answers too.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/integration/server_test_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

namespace pb = google::protobuf;

// The two packages' generated types; the messages are the same, field for field.
struct ReflectionV1 {
  using Service = grpc::reflection::v1::ServerReflection;
  using Request = grpc::reflection::v1::ServerReflectionRequest;
  using Response = grpc::reflection::v1::ServerReflectionResponse;
};
struct ReflectionV1Alpha {
  using Service = grpc::reflection::v1alpha::ServerReflection;
  using Request = grpc::reflection::v1alpha::ServerReflectionRequest;
  using Response = grpc::reflection::v1alpha::ServerReflectionResponse;
};

const std::vector<std::string>& ExposedServices() {
  static const std::vector<std::string> services = {"moeserve.v1.Moeserve", "grpc.health.v1.Health",
                                                    "grpc.reflection.v1.ServerReflection",
                                                    "grpc.reflection.v1alpha.ServerReflection"};
  return services;
}

// A unary call with raw bytes in and out, as a client without generated code makes it.
grpc::Status CallUnary(grpc::Channel& channel, const std::string& method_name,
                       const std::string& request_bytes, std::string& response_bytes) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const grpc::internal::RpcMethod method(method_name.c_str(),
                                         grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::Slice slice(request_bytes);
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  const grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      &channel, method, &context, request, &response);
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) response_bytes.append(s.begin(), s.end());
  }
  return status;
}

// One server for the suite (each CTest case is its own process, so each starts one).
template <typename Package>
class ReflectionTest : public ::testing::Test {
 protected:
  using Request = typename Package::Request;
  using Response = typename Package::Response;

  static void SetUpTestSuite() {
    server_ = new ServerProcess();
    if (!server_->Start(ServerBinary(), {"--model", TestCheckpointDir("tiny-v3", false)})) {
      start_error_ = server_->error();
    }
  }
  static void TearDownTestSuite() {
    delete server_;  // SIGTERM and wait
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    channel_ = MakeChannel(server_->target());
  }
  void TearDown() override {
    if (HasFailure() && server_ != nullptr) std::cerr << "server log:\n" << server_->Log();
  }

  // Sends `requests` on one ServerReflectionInfo stream, as grpcurl does, and returns the
  // answers in order.
  std::vector<Response> Ask(const std::vector<Request>& requests) {
    auto stub = Package::Service::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->ServerReflectionInfo(&context);
    for (const Request& request : requests) EXPECT_TRUE(stream->Write(request));
    stream->WritesDone();
    std::vector<Response> responses;
    Response response;
    while (stream->Read(&response)) responses.push_back(response);
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(responses.size(), requests.size());
    return responses;
  }
  Response AskOne(const Request& request) {
    std::vector<Response> responses = Ask({request});
    return responses.empty() ? Response() : responses[0];
  }

  static Request SymbolRequest(const std::string& symbol) {
    Request request;
    request.set_file_containing_symbol(symbol);
    return request;
  }

  // The reflected files of `response` added to `database`; false if one does not parse.
  static bool AddFiles(const Response& response, pb::SimpleDescriptorDatabase& database) {
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      if (!file.ParseFromString(bytes)) return false;
      database.Add(file);  // false for a file already added: the same file again, harmless
    }
    return true;
  }

  static inline ServerProcess* server_ = nullptr;
  static inline std::string start_error_;
  std::shared_ptr<grpc::Channel> channel_;
};

using Packages = ::testing::Types<ReflectionV1, ReflectionV1Alpha>;
class PackageNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, ReflectionV1> ? "v1" : "v1alpha";
  }
};
TYPED_TEST_SUITE(ReflectionTest, Packages, PackageNames);

TYPED_TEST(ReflectionTest, List_NamesEveryExposedService) {
  typename TestFixture::Request request;
  request.set_list_services("");
  request.set_host("localhost:50051");
  const auto response = this->AskOne(request);
  ASSERT_FALSE(response.has_error_response()) << response.DebugString();
  EXPECT_EQ(response.valid_host(), "localhost:50051");
  EXPECT_EQ(response.original_request().list_services(), "");
  std::set<std::string> listed;
  for (const auto& service : response.list_services_response().service()) {
    listed.insert(service.name());
  }
  for (const std::string& name : ExposedServices()) EXPECT_TRUE(listed.contains(name)) << name;
}

// grpcurl's `describe SERVICE` for every listed service: the service's file and its imports
// resolve in a pool of their own, and so does every method's input and output type.
TYPED_TEST(ReflectionTest, Describe_ResolvesEveryMethodOfEveryService) {
  std::vector<typename TestFixture::Request> requests;
  for (const std::string& name : ExposedServices()) requests.push_back(this->SymbolRequest(name));
  const auto responses = this->Ask(requests);
  ASSERT_EQ(responses.size(), ExposedServices().size());
  pb::SimpleDescriptorDatabase database;
  for (const auto& response : responses) {
    ASSERT_FALSE(response.has_error_response()) << response.DebugString();
    ASSERT_TRUE(this->AddFiles(response, database));
  }
  pb::DescriptorPool pool(&database);
  for (const std::string& name : ExposedServices()) {
    const pb::ServiceDescriptor* service = pool.FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    EXPECT_GT(service->method_count(), 0) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* method = service->method(i);
      EXPECT_NE(pool.FindMessageTypeByName(method->input_type()->full_name()), nullptr)
          << method->full_name();
      EXPECT_NE(pool.FindMessageTypeByName(method->output_type()->full_name()), nullptr)
          << method->full_name();
    }
  }
  const pb::ServiceDescriptor* moeserve = pool.FindServiceByName("moeserve.v1.Moeserve");
  ASSERT_NE(moeserve, nullptr);
  for (const char* method : {"Generate", "Tokenize", "GetModelInfo", "GetServerInfo", "Abort"}) {
    EXPECT_NE(moeserve->FindMethodByName(method), nullptr) << method;
  }
}

// grpcurl -d '{"service": ""}' HOST grpc.health.v1.Health/Check, with no .proto and no
// generated health code: the request and the answer are dynamic messages of the reflected types.
TYPED_TEST(ReflectionTest, HealthCheckBuiltFromReflectedDescriptors_IsServing) {
  pb::SimpleDescriptorDatabase database;
  ASSERT_TRUE(this->AddFiles(this->AskOne(this->SymbolRequest("grpc.health.v1.Health")), database));
  pb::DescriptorPool pool(&database);
  const pb::MethodDescriptor* check = pool.FindMethodByName("grpc.health.v1.Health.Check");
  ASSERT_NE(check, nullptr);
  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> request(factory.GetPrototype(check->input_type())->New());
  const pb::FieldDescriptor* service_field = check->input_type()->FindFieldByName("service");
  ASSERT_NE(service_field, nullptr);
  request->GetReflection()->SetString(request.get(), service_field, "");

  std::string response_bytes;
  const grpc::Status status =
      CallUnary(*this->channel_, "/" + check->service()->full_name() + "/" + check->name(),
                request->SerializeAsString(), response_bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::unique_ptr<pb::Message> response(factory.GetPrototype(check->output_type())->New());
  ASSERT_TRUE(response->ParseFromString(response_bytes));
  const pb::FieldDescriptor* status_field = check->output_type()->FindFieldByName("status");
  ASSERT_NE(status_field, nullptr);
  EXPECT_EQ(response->GetReflection()->GetEnum(*response, status_field)->name(), "SERVING")
      << response->DebugString();
}

TYPED_TEST(ReflectionTest, FileByFilename_ReturnsTheFileFirstThenItsImports) {
  typename TestFixture::Request request;
  request.set_file_by_filename("moeserve/v1/moeserve.proto");
  const auto response = this->AskOne(request);
  ASSERT_FALSE(response.has_error_response()) << response.DebugString();
  const auto& files = response.file_descriptor_response().file_descriptor_proto();
  ASSERT_FALSE(files.empty());
  pb::FileDescriptorProto first;
  ASSERT_TRUE(first.ParseFromString(files[0]));
  EXPECT_EQ(first.name(), "moeserve/v1/moeserve.proto");
  std::set<std::string> names;
  for (const std::string& bytes : files) {
    pb::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    EXPECT_TRUE(names.insert(file.name()).second) << "sent twice: " << file.name();
  }
  for (const std::string& import : first.dependency()) {
    EXPECT_TRUE(names.contains(import)) << "import not sent: " << import;
  }
}

TYPED_TEST(ReflectionTest, UnknownNames_AreNotFoundAndTheStreamGoesOn) {
  std::vector<typename TestFixture::Request> requests(5);
  requests[0].set_file_by_filename("no/such.proto");
  requests[1].set_file_containing_symbol("no.such.Service");
  requests[2].set_all_extension_numbers_of_type("no.such.Message");
  requests[3].mutable_file_containing_extension()->set_containing_type(
      "moeserve.v1.GenerateRequest");
  requests[3].mutable_file_containing_extension()->set_extension_number(12345);
  requests[4].set_list_services("");  // still answered after four errors
  const auto responses = this->Ask(requests);
  ASSERT_EQ(responses.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(responses[i].error_response().error_code(), grpc::StatusCode::NOT_FOUND)
        << responses[i].DebugString();
  }
  EXPECT_FALSE(responses[4].has_error_response());

  // A message with no extensions: its (empty) list, not an error.
  typename TestFixture::Request numbers;
  numbers.set_all_extension_numbers_of_type("moeserve.v1.GenerateRequest");
  const auto answer = this->AskOne(numbers);
  ASSERT_FALSE(answer.has_error_response()) << answer.DebugString();
  EXPECT_EQ(answer.all_extension_numbers_response().base_type_name(),
            "moeserve.v1.GenerateRequest");
  EXPECT_EQ(answer.all_extension_numbers_response().extension_number_size(), 0);
}

}  // namespace
}  // namespace moeserve::testing
