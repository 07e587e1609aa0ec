// Request bytes → proto messages, and response messages → bytes, for the RPCs the service
// registers as raw (ByteBuffer) methods.
//
// Why raw: gRPC 1.51's callback handlers answer a request that fails to parse with
// UNIMPLEMENTED and an empty message, before any service code runs, and protobuf refuses to
// parse a proto3 string field holding invalid UTF-8. A client that sends such a prompt would
// get a misleading code. Parsing here instead turns it into INVALID_ARGUMENT naming the field
// ("text is not valid UTF-8 (byte offset 3)"), as DESIGN.md §7 asks for every bad input.
// GenerateService uses ParseRequest for Generate, Tokenize and Abort; GenerateStream
// serializes its responses with ToByteBuffer. Thread-safe.
#pragma once

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"

namespace moeserve::server {

// INVALID_ARGUMENT when `buffer` is not a valid `message`: the path of the first string field
// with invalid UTF-8 when that is the reason, else a generic malformed-message error.
absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message& message);

grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message);

}  // namespace moeserve::server
