#include "engine/cli/command_line.h"

#include <filesystem>
#include <vector>

#include "engine/cli/version.h"  // generated from version.h.in

namespace moeserve::engine {

std::string VersionLine(std::string_view binary_name) {
  std::string line = std::string(binary_name) + " " + kProjectVersion;
  if (kGitCommit[0] != '\0') line += std::string(" (") + kGitCommit + ")";
  return line;
}

std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv) {
  const std::string binary_name =
      argc > 0 ? std::filesystem::path(argv[0]).filename().string() : app.get_name();
  app.set_version_flag("--version", VersionLine(binary_name));
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::ParseError& error) {
    constexpr int kSuccess = static_cast<int>(CLI::ExitCodes::Success);  // --help, --version
    // CLI11 checks required options before unknown arguments, so `--modle DIR` would come out
    // as "--model is required"; the unknown argument is the likelier mistake, so name it.
    const std::vector<std::string> unknown = app.remaining(/*recurse=*/true);
    if (error.get_exit_code() != kSuccess && !unknown.empty() && !app.get_allow_extras()) {
      // ExtrasError joins its list back to front (CLI11 2.1): reversed, it reads as typed.
      app.exit(CLI::ExtrasError(std::vector<std::string>(unknown.rbegin(), unknown.rend())));
      return kExitUsage;
    }
    // app.exit prints help and version to stdout, anything else with the --help hint to stderr.
    return app.exit(error) == kSuccess ? 0 : kExitUsage;
  }
}

}  // namespace moeserve::engine
