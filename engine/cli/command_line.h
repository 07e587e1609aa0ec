// Command-line parsing shared by every moeserve binary (server, clients, tools, benchmarks), so
// that they all behave alike for scripts and orchestrators:
//   --version      prints "<binary> <project version> (<git commit>)" to stdout, exits 0;
//   --help         prints the usage to stdout, exits 0;
//   a usage error  prints CLI11's message and "Run with --help for more information." to stderr,
//                  exits 2 (the getopt convention, which CLI11_PARSE does not follow: it exits
//                  with CLI11's own codes, 105, 106, 109, ...).
// main() calls ParseCommandLine in place of CLI11_PARSE.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"

namespace moeserve::engine {

// Exit status of a usage error: unknown flag, bad value, missing argument.
inline constexpr int kExitUsage = 2;

// "<binary_name> <project version> (<git commit>)"; without the parenthesis when CMake found
// no git checkout. The commit is the one checked out when CMake last configured the build.
std::string VersionLine(std::string_view binary_name);

// Adds --version to `app`, then parses argv. nullopt: the flags are set, go on; otherwise the
// help, the version or the usage error has been printed and main returns the value.
std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv);

}  // namespace moeserve::engine
