// AnswerReflectionRequest on a pool of its own, which unlike the server's has an extension: a
// message in one file extended from another, plus a service. Both packages (v1, v1alpha) give
// the same answer, byte for byte. The server's own pool over the wire is in
// tests/integration/reflection_test.cc.
#include "server/reflection_service.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/text_format.h"

namespace moeserve::server {
namespace {

namespace pb = google::protobuf;
namespace v1 = grpc::reflection::v1;
namespace v1alpha = grpc::reflection::v1alpha;

constexpr char kBaseFile[] = R"pb(
  name: "test/base.proto"
  package: "test"
  message_type {
    name: "Extendable"
    extension_range { start: 100 end: 200 }
  }
)pb";
constexpr char kExtensionFile[] = R"pb(
  name: "test/extension.proto"
  package: "test"
  dependency: "test/base.proto"
  extension {
    name: "note"
    number: 150
    label: LABEL_OPTIONAL
    type: TYPE_STRING
    extendee: ".test.Extendable"
  }
  service {
    name: "Echo"
    method { name: "Say" input_type: ".test.Extendable" output_type: ".test.Extendable" }
  }
)pb";

class ReflectionAnswerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* text : {kBaseFile, kExtensionFile}) {
      pb::FileDescriptorProto file;
      ASSERT_TRUE(pb::TextFormat::ParseFromString(text, &file));
      ASSERT_NE(pool_.BuildFile(file), nullptr) << file.name();
    }
  }

  v1::ServerReflectionResponse Answer(const v1::ServerReflectionRequest& request) {
    return AnswerReflectionRequest<v1::ServerReflectionRequest, v1::ServerReflectionResponse>(
        request, services_, pool_);
  }

  // The names of the files of a file descriptor response, in order.
  static std::vector<std::string> FileNames(const v1::ServerReflectionResponse& response) {
    std::vector<std::string> names;
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      names.push_back(file.name());
    }
    return names;
  }

  pb::DescriptorPool pool_;
  const std::vector<std::string> services_ = {"test.Echo"};
};

TEST_F(ReflectionAnswerTest, ListServices_NamesTheGivenServices) {
  v1::ServerReflectionRequest request;
  request.set_list_services("");
  const v1::ServerReflectionResponse response = Answer(request);
  ASSERT_EQ(response.list_services_response().service_size(), 1);
  EXPECT_EQ(response.list_services_response().service(0).name(), "test.Echo");
}

TEST_F(ReflectionAnswerTest, FileContainingSymbol_FileFirstThenItsImports) {
  for (const char* symbol : {"test.Echo", "test.Echo.Say", "test.note"}) {
    v1::ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    EXPECT_EQ(FileNames(Answer(request)),
              (std::vector<std::string>{"test/extension.proto", "test/base.proto"}))
        << symbol;
  }
}

TEST_F(ReflectionAnswerTest, FileContainingExtension_IsTheExtensionsFile) {
  v1::ServerReflectionRequest request;
  request.mutable_file_containing_extension()->set_containing_type("test.Extendable");
  request.mutable_file_containing_extension()->set_extension_number(150);
  EXPECT_EQ(FileNames(Answer(request)),
            (std::vector<std::string>{"test/extension.proto", "test/base.proto"}));

  request.mutable_file_containing_extension()->set_extension_number(151);
  EXPECT_EQ(Answer(request).error_response().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReflectionAnswerTest, AllExtensionNumbersOfType_ListsTheExtension) {
  v1::ServerReflectionRequest request;
  request.set_all_extension_numbers_of_type("test.Extendable");
  const v1::ServerReflectionResponse response = Answer(request);
  ASSERT_FALSE(response.has_error_response()) << response.DebugString();
  EXPECT_EQ(response.all_extension_numbers_response().base_type_name(), "test.Extendable");
  EXPECT_EQ(std::vector<int>(response.all_extension_numbers_response().extension_number().begin(),
                             response.all_extension_numbers_response().extension_number().end()),
            std::vector<int>{150});
}

TEST_F(ReflectionAnswerTest, EveryAnswer_EchoesHostAndRequest) {
  v1::ServerReflectionRequest request;
  request.set_host("example:50051");
  request.set_file_by_filename("test/base.proto");
  const v1::ServerReflectionResponse response = Answer(request);
  EXPECT_EQ(response.valid_host(), "example:50051");
  EXPECT_EQ(response.original_request().SerializeAsString(), request.SerializeAsString());
}

TEST_F(ReflectionAnswerTest, NoRequestSet_IsUnimplemented) {
  EXPECT_EQ(Answer(v1::ServerReflectionRequest()).error_response().error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(ReflectionAnswerTest, V1AlphaAnswers_AreV1AnswersByteForByte) {
  std::vector<v1::ServerReflectionRequest> requests(4);
  requests[0].set_list_services("");
  requests[1].set_file_by_filename("test/extension.proto");
  requests[2].set_all_extension_numbers_of_type("test.Extendable");
  requests[3].set_file_containing_symbol("no.such.Symbol");
  for (const v1::ServerReflectionRequest& request : requests) {
    v1alpha::ServerReflectionRequest alpha_request;
    ASSERT_TRUE(alpha_request.ParseFromString(request.SerializeAsString()));
    const auto alpha_response =
        AnswerReflectionRequest<v1alpha::ServerReflectionRequest,
                                v1alpha::ServerReflectionResponse>(alpha_request, services_, pool_);
    EXPECT_EQ(alpha_response.SerializeAsString(), Answer(request).SerializeAsString())
        << request.DebugString();
  }
}

}  // namespace
}  // namespace moeserve::server
