// `moeserve-cli chat`: one turn, or a conversation on stdin, through Generate's chat input.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "clients/cli/cli_commands.h"
#include "clients/cli/cli_common.h"

namespace moeserve::cli {

int RunChat(const Connection& connection, const ChatFlags& flags) {
  std::vector<ChatTurn> turns;
  if (flags.system) turns.push_back({"system", *flags.system});
  auto turn = [&](const std::string& user_text) {
    turns.push_back({"user", user_text});
    absl::StatusOr<v1::GenerateRequest> request = BuildChatRequest(flags.generation, turns);
    if (!request.ok()) {
      std::fprintf(stderr, "moeserve-cli chat: %s\n",
                   std::string(request.status().message()).c_str());
      return kExitUsage;
    }
    std::string reply;
    const int status = StreamGenerate(connection, *request, flags.generation, &reply);
    turns.push_back({"assistant", reply});
    return status;
  };
  if (flags.message) {
    absl::StatusOr<std::string> text = ReadPromptArgument(*flags.message, std::cin);
    if (!text.ok()) {
      std::fprintf(stderr, "moeserve-cli chat: %s\n", std::string(text.status().message()).c_str());
      return kExitUsage;
    }
    return turn(*text);
  }
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  std::string line;
  while (true) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (const int status = turn(line); status != kExitOk) return status;
  }
  return kExitOk;
}

}  // namespace moeserve::cli
