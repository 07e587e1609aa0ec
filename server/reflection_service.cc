#include "server/reflection_service.h"

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.pb.h"

namespace moeserve::server {
namespace {

namespace pb = google::protobuf;

// Adds `file` and every file it imports, transitively, each once per response: a client needs
// them all to build the descriptors, and gRPC's reflection answers the same way. `file` comes
// first, so a client that reads only the first entry gets the one it asked for.
template <typename Response>
void AddFileWithDependencies(const pb::FileDescriptor& file, std::set<std::string>& added,
                             Response& response) {
  if (!added.insert(file.name()).second) return;
  pb::FileDescriptorProto proto;
  file.CopyTo(&proto);
  response.mutable_file_descriptor_response()->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file.dependency_count(); ++i) {
    AddFileWithDependencies(*file.dependency(i), added, response);
  }
}

// Always OK: a Status only so that every case of Answer ends in one return.
template <typename Response>
absl::Status AddFile(const pb::FileDescriptor& file, Response& response) {
  std::set<std::string> added;
  AddFileWithDependencies(file, added, response);
  return absl::OkStatus();
}

template <typename Request, typename Response>
absl::Status Answer(const Request& request, const std::vector<std::string>& service_names,
                    const pb::DescriptorPool& pool, Response& response) {
  switch (request.message_request_case()) {
    case Request::kListServices:
      for (const std::string& name : service_names) {
        response.mutable_list_services_response()->add_service()->set_name(name);
      }
      return absl::OkStatus();
    case Request::kFileByFilename: {
      const pb::FileDescriptor* file = pool.FindFileByName(request.file_by_filename());
      if (file == nullptr) {
        return absl::NotFoundError(absl::StrCat("file not found: ", request.file_by_filename()));
      }
      return AddFile(*file, response);
    }
    case Request::kFileContainingSymbol: {
      const pb::FileDescriptor* file =
          pool.FindFileContainingSymbol(request.file_containing_symbol());
      if (file == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("symbol not found: ", request.file_containing_symbol()));
      }
      return AddFile(*file, response);
    }
    case Request::kFileContainingExtension: {
      const auto& wanted = request.file_containing_extension();
      const pb::Descriptor* type = pool.FindMessageTypeByName(wanted.containing_type());
      if (type == nullptr) {
        return absl::NotFoundError(absl::StrCat("type not found: ", wanted.containing_type()));
      }
      const pb::FieldDescriptor* extension =
          pool.FindExtensionByNumber(type, wanted.extension_number());
      if (extension == nullptr) {
        return absl::NotFoundError(absl::StrCat("extension not found: ", wanted.containing_type(),
                                                " has no extension ", wanted.extension_number()));
      }
      return AddFile(*extension->file(), response);
    }
    case Request::kAllExtensionNumbersOfType: {
      const pb::Descriptor* type =
          pool.FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("type not found: ", request.all_extension_numbers_of_type()));
      }
      std::vector<const pb::FieldDescriptor*> extensions;
      pool.FindAllExtensions(type, &extensions);
      auto* numbers = response.mutable_all_extension_numbers_response();
      numbers->set_base_type_name(type->full_name());
      for (const pb::FieldDescriptor* extension : extensions) {
        numbers->add_extension_number(extension->number());
      }
      return absl::OkStatus();
    }
    default:
      return absl::UnimplementedError("no message_request set, or one this server does not know");
  }
}

}  // namespace

template <typename Request, typename Response>
Response AnswerReflectionRequest(const Request& request,
                                 const std::vector<std::string>& service_names,
                                 const pb::DescriptorPool& pool) {
  Response response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  if (absl::Status status = Answer(request, service_names, pool, response); !status.ok()) {
    // absl's codes are gRPC's, number for number.
    response.mutable_error_response()->set_error_code(static_cast<int32_t>(status.code()));
    response.mutable_error_response()->set_error_message(std::string(status.message()));
  }
  return response;
}

template <typename GeneratedService, typename Request, typename Response>
grpc::Status ServerReflectionService<GeneratedService, Request, Response>::ServerReflectionInfo(
    grpc::ServerContext* /*context*/, grpc::ServerReaderWriter<Response, Request>* stream) {
  Request request;
  while (stream->Read(&request)) {
    if (!stream->Write(
            AnswerReflectionRequest<Request, Response>(request, service_names_, *pool_))) {
      break;  // the client is gone
    }
  }
  return grpc::Status::OK;
}

template grpc::reflection::v1::ServerReflectionResponse AnswerReflectionRequest(
    const grpc::reflection::v1::ServerReflectionRequest&, const std::vector<std::string>&,
    const pb::DescriptorPool&);
template grpc::reflection::v1alpha::ServerReflectionResponse AnswerReflectionRequest(
    const grpc::reflection::v1alpha::ServerReflectionRequest&, const std::vector<std::string>&,
    const pb::DescriptorPool&);
template class ServerReflectionService<grpc::reflection::v1::ServerReflection,
                                       grpc::reflection::v1::ServerReflectionRequest,
                                       grpc::reflection::v1::ServerReflectionResponse>;
template class ServerReflectionService<grpc::reflection::v1alpha::ServerReflection,
                                       grpc::reflection::v1alpha::ServerReflectionRequest,
                                       grpc::reflection::v1alpha::ServerReflectionResponse>;

}  // namespace moeserve::server
