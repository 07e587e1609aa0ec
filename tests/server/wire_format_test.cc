// ParseRequest turns bytes that protobuf refuses into INVALID_ARGUMENT naming the field (the
// string field with invalid UTF-8, at any depth), and round-trips valid messages.
#include "server/wire_format.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "moeserve/v1/moeserve.pb.h"

namespace moeserve::server {
namespace {

namespace v1 = moeserve::v1;

grpc::ByteBuffer Bytes(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// Length-delimited field `number` holding `payload` (payload shorter than 128 bytes).
std::string Field(int number, const std::string& payload) {
  const char header[] = {static_cast<char>((number << 3) | 2), static_cast<char>(payload.size())};
  return absl::StrCat(absl::string_view(header, 2), payload);
}

TEST(WireFormatTest, ValidMessageRoundTrips) {
  v1::GenerateRequest request;
  request.set_text("Hello");
  request.mutable_sampling_params()->add_stop(std::string(1, '\n'));
  v1::GenerateRequest parsed;
  ASSERT_TRUE(ParseRequest(ToByteBuffer(request), parsed).ok());
  EXPECT_EQ(parsed.text(), "Hello");
  EXPECT_EQ(parsed.sampling_params().stop(0), "\n");
}

TEST(WireFormatTest, InvalidUtf8TextNamesTheField) {
  v1::GenerateRequest parsed;
  const absl::Status status = ParseRequest(Bytes(Field(3, "ab\xff")), parsed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "text is not valid UTF-8 (byte offset 2)");
}

TEST(WireFormatTest, InvalidUtf8InNestedRepeatedFieldNamesPathAndIndex) {
  // sampling_params (4) { stop (10): "ok", stop: "\xc3(" }
  const std::string sampling = absl::StrCat(Field(10, "ok"), Field(10, "\xc3("));
  v1::GenerateRequest parsed;
  const absl::Status status =
      ParseRequest(Bytes(absl::StrCat(Field(3, "Hi"), Field(4, sampling))), parsed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "sampling_params.stop[1] is not valid UTF-8 (byte offset 0)");
}

TEST(WireFormatTest, InvalidUtf8InTokenizedOriginalText) {
  v1::GenerateRequest parsed;
  const absl::Status status = ParseRequest(Bytes(Field(2, Field(1, "\x80"))), parsed);
  EXPECT_EQ(status.message(), "tokenized.original_text is not valid UTF-8 (byte offset 0)");
}

TEST(WireFormatTest, InvalidUtf8InAbortIds) {
  v1::AbortRequest parsed;
  const absl::Status status =
      ParseRequest(Bytes(absl::StrCat(Field(1, "a"), Field(1, "\xfe"))), parsed);
  EXPECT_EQ(status.message(), "request_ids[1] is not valid UTF-8 (byte offset 0)");
}

TEST(WireFormatTest, MalformedBytesAreInvalidArgument) {
  v1::GenerateRequest parsed;
  const absl::Status status = ParseRequest(Bytes(std::string("\x1a\x09Hi", 4)), parsed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      status.message(),
      "the request is not a valid moeserve.v1.GenerateRequest (malformed protobuf wire data)");
}

TEST(WireFormatTest, EmptyBufferIsTheEmptyMessage) {
  v1::GetServerInfoRequest parsed;
  EXPECT_TRUE(ParseRequest(grpc::ByteBuffer(), parsed).ok());
}

}  // namespace
}  // namespace moeserve::server
