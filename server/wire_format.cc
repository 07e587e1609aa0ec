#include "server/wire_format.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/support/slice.h"

namespace moeserve::server {
namespace {

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Walks the raw wire fields of a message of type `type` (parsed schema-less) and returns the
// complaint about the first string field, at any depth, that is not valid UTF-8.
std::optional<std::string> FindInvalidUtf8(const google::protobuf::UnknownFieldSet& fields,
                                           const google::protobuf::Descriptor& type,
                                           const std::string& prefix) {
  absl::flat_hash_map<int, int> occurrences;  // field number → index for repeated fields
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& field = fields.field(i);
    const google::protobuf::FieldDescriptor* descriptor = type.FindFieldByNumber(field.number());
    const int index = occurrences[field.number()]++;
    if (descriptor == nullptr ||
        field.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    std::string path = absl::StrCat(prefix, descriptor->name());
    if (descriptor->is_repeated()) absl::StrAppend(&path, "[", index, "]");
    const std::string& bytes = field.length_delimited();
    if (descriptor->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      const size_t bad = engine::FindInvalidUtf8(bytes);
      if (bad != bytes.size()) {
        return absl::StrCat(path, " is not valid UTF-8 (byte offset ", bad, ")");
      }
    } else if (descriptor->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
               !descriptor->is_map()) {
      google::protobuf::UnknownFieldSet nested;
      if (nested.ParseFromString(bytes)) {
        if (auto found = FindInvalidUtf8(nested, *descriptor->message_type(), path + ".")) {
          return found;
        }
      }
    }
  }
  return std::nullopt;
}

}  // namespace

absl::Status ParseRequest(const grpc::ByteBuffer& buffer, google::protobuf::Message& message) {
  const std::string bytes = Flatten(buffer);
  if (message.ParseFromString(bytes)) return absl::OkStatus();
  google::protobuf::UnknownFieldSet fields;
  if (fields.ParseFromString(bytes)) {
    if (auto complaint = FindInvalidUtf8(fields, *message.GetDescriptor(), "")) {
      return absl::InvalidArgumentError(*complaint);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("the request is not a valid ",
                                                 message.GetDescriptor()->full_name(),
                                                 " (malformed protobuf wire data)"));
}

grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace moeserve::server
