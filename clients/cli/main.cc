// moeserve-cli: a command-line client of a moeserve server.
//   moeserve-cli [--target HOST:PORT] generate [flags] PROMPT   streams the completion
//   moeserve-cli chat [--system TEXT] [flags] [MESSAGE]           a chat turn, or one per stdin
//   line moeserve-cli tokenize TEXT                                    token ids as a JSON array
//   moeserve-cli info [--json]                                    model and server info
//   moeserve-cli health [--timeout S]                             exit 0 only when SERVING
// Exit status: 0 success, 1 the call failed (gRPC code and message on stderr), 2 usage error.
#include <cstdio>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "clients/cli/cli_commands.h"
#include "clients/cli/cli_common.h"
#include "engine/cli/command_line.h"

int main(int argc, char** argv) {
  using namespace moeserve::cli;
  CLI::App app{"Command-line client of a moeserve gRPC server."};
  app.require_subcommand(1);
  Connection connection;
  app.add_option("--target", connection.target, "server address HOST:PORT")->capture_default_str();
  app.add_option("--api-key", connection.api_key,
                 "sent as 'authorization: Bearer KEY' (or set MOESERVE_API_KEY)")
      ->envname("MOESERVE_API_KEY");
  app.add_option("--tls-ca", connection.tls_ca,
                 "PEM CA bundle: connect over TLS and verify the server against it");
  app.add_option("--tls-cert", connection.tls_cert, "PEM client certificate (mutual TLS)");
  app.add_option("--tls-key", connection.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-server-name", connection.tls_server_name,
                 "name expected in the server certificate (default: the target's host)");

  GenerateFlags generate;
  CLI::App* generate_command =
      app.add_subcommand("generate", "stream a completion of PROMPT to stdout");
  AddGenerateFlags(*generate_command, generate);

  ChatFlags chat;
  CLI::App* chat_command = app.add_subcommand(
      "chat",
      "chat with the model (its chat template is applied by the server): MESSAGE is one user "
      "turn; without it, each line of stdin is a turn until EOF or /exit");
  chat_command->add_option("MESSAGE", chat.message, "the user's message; - reads it from stdin");
  chat_command->add_option("--system", chat.system, "a system message first");
  AddSamplingFlags(*chat_command, chat.generation);

  std::string text;
  bool no_add_special_tokens = false;
  double unary_timeout = 30;
  CLI::App* tokenize_command = app.add_subcommand("tokenize", "print TEXT's token ids as JSON");
  tokenize_command->add_option("TEXT", text, "text to tokenize")->required();
  tokenize_command->add_flag("--no-add-special-tokens", no_add_special_tokens,
                             "do not add BOS etc.");
  tokenize_command->add_option("--timeout", unary_timeout, "deadline in seconds")
      ->capture_default_str();

  bool info_json = false;
  CLI::App* info_command = app.add_subcommand("info", "print model and server information");
  info_command->add_flag("--json", info_json, "one JSON object {\"model\": ..., \"server\": ...}");
  info_command->add_option("--timeout", unary_timeout, "deadline in seconds")
      ->capture_default_str();

  std::string service;
  double health_timeout = 5;
  CLI::App* health_command = app.add_subcommand(
      "health", "grpc.health.v1 Check; exit 0 only when SERVING (a container health check)");
  health_command->add_option("--service", service, "service name (default: the whole server)");
  health_command->add_option("--timeout", health_timeout, "deadline in seconds")
      ->capture_default_str();

  // 0 after --help or --version; 2 (kExitUsage) with CLI11's message after a usage error.
  static_assert(kExitUsage == moeserve::engine::kExitUsage);
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  if (generate_command->parsed()) return RunGenerate(connection, generate);
  if (chat_command->parsed()) return RunChat(connection, chat);
  if (tokenize_command->parsed()) {
    return RunTokenize(connection, text, !no_add_special_tokens, unary_timeout);
  }
  if (info_command->parsed()) return RunInfo(connection, info_json, unary_timeout);
  return RunHealth(connection, service, health_timeout);
}
