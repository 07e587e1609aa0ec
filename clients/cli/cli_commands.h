// The subcommands of moeserve-cli, one function each; main.cc parses the command line and
// calls one. Each returns the process exit status (cli_common.h): 0 on success, 1 when the
// call fails (the gRPC status is printed to stderr), 2 for a usage error.
#pragma once

#include <optional>
#include <string>

#include "clients/cli/cli_common.h"
#include "clients/cli/generate_flags.h"

namespace moeserve::cli {

// Streams one Generate call: the text of each chunk to stdout as it arrives (or, with --json,
// every response as a JSON line).
int RunGenerate(const Connection& connection, const GenerateFlags& flags);

// One Generate call of `request` printed as RunGenerate prints it; the streamed text is also
// appended to `text_out` when given.
int StreamGenerate(const Connection& connection, const v1::GenerateRequest& request,
                   const GenerateFlags& flags, std::string* text_out);

// `moeserve-cli chat`: the server renders the model's chat template. With MESSAGE (or "-" for
// stdin), one turn; without, a conversation read line by line from stdin (each line a user
// turn, the replies kept as history) until EOF or "/exit".
struct ChatFlags {
  GenerateFlags generation;  // sampling and call flags; its prompt fields are unused
  std::optional<std::string> message;
  std::optional<std::string> system;
};
int RunChat(const Connection& connection, const ChatFlags& flags);

// Prints the prompt's token ids as a JSON array.
int RunTokenize(const Connection& connection, const std::string& text, bool add_special_tokens,
                double timeout_seconds);

// Prints GetModelInfo and GetServerInfo, as text or as one JSON object.
int RunInfo(const Connection& connection, bool json, double timeout_seconds);

// grpc.health.v1 Check: prints the status (SERVING, NOT_SERVING, ...); 0 only when SERVING.
int RunHealth(const Connection& connection, const std::string& service, double timeout_seconds);

}  // namespace moeserve::cli
