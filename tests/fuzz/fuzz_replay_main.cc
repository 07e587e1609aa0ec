// A main() for the fuzz targets in ordinary builds (any compiler, no libFuzzer): runs every
// file of the given corpus directories through LLVMFuzzerTestOneInput, then `--mutations N`
// random mutants of each (byte flips, inserts, deletions, truncations, splices of two seeds)
// from a fresh seed, printed so a failure can be replayed with `--seed S`. CI runs this for
// every target; scripts/fuzz runs the real fuzzer.
//   <target>_replay [--mutations N] [--seed S] DIR...
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace {

std::string Mutate(const std::string& seed, const std::string& other, std::mt19937_64& rng) {
  std::string out = seed;
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int e = 0; e < edits; ++e) {
    const size_t at = out.empty() ? 0 : rng() % (out.size() + 1);
    switch (rng() % 6) {
      case 0:  // flip bits of one byte
        if (!out.empty()) out[at % out.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:  // insert random bytes
        out.insert(at, std::string(1 + rng() % 4, static_cast<char>(rng())));
        break;
      case 2:  // delete a run
        if (!out.empty()) out.erase(at % out.size(), 1 + rng() % 16);
        break;
      case 3:  // truncate
        out.resize(at);
        break;
      case 4:  // an interesting byte: quote, brace, digit, NUL, 0xff
        if (!out.empty()) out[at % out.size()] = "\"{}[]:,0-9e\0\xff"[rng() % 14];
        break;
      case 5:  // splice the tail of another seed
        if (!other.empty()) out = out.substr(0, at) + other.substr(rng() % other.size());
        break;
    }
  }
  return out;
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  int mutations = 200;
  uint64_t seed = std::random_device{}();
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::atoi(argv[++i]);
    } else if (arg == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(arg)) {
        if (!entry.is_regular_file()) continue;
        std::ifstream in(entry.path(), std::ios::binary);
        seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "no corpus files given\n");
    return 2;
  }
  std::printf("replaying %zu seeds, %d mutants each, --seed %llu\n", seeds.size(), mutations,
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  long runs = 0;
  for (const std::string& s : seeds) {
    Run(s);
    ++runs;
    for (int m = 0; m < mutations; ++m) {
      Run(Mutate(s, seeds[rng() % seeds.size()], rng));
      ++runs;
    }
  }
  std::printf("%ld inputs, no finding\n", runs);
  return 0;
}
