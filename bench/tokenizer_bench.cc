// Tokenizer encode throughput on one core: MB/s of English text through Tokenizer::Encode, for
// each tokenizer directory given (default: the two under tests/data/tokenizers). Prints a table
// and writes JSON with device, date, commit.
//   moeserve-bench-tokenizer [--tokenizer DIR]... [--text FILE] [--chunk-bytes 4096]
//                            [--repeats 3] [--output FILE]
// The text is --text, else the King James Bible from the `bible` program (bible-kjv, the corpus
// kjv-bpe-8k was trained on), else generated English-like text from the words of the KJV lines
// in the fixtures. It is encoded in chunks of about --chunk-bytes (cut at line ends), the size
// of a prompt, one Encode call each, on one thread. "cold" is the first pass over the text with
// a freshly loaded tokenizer (empty BPE piece cache); "warm" is the best of --repeats further
// passes. Every chunk is checked to decode back to itself.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "bench/bench_report.h"
#include "engine/cli/command_line.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

using moeserve::engine::Tokenizer;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point begin) {
  return std::chrono::duration<double>(Clock::now() - begin).count();
}

std::string ReadAll(std::FILE* file) {
  std::string text;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  return text;
}

// ~4 MB of text from the words of the fixture lines: words drawn with a Zipf-like skew, lines
// of 10-40 words with commas and a period, so the piece cache sees a realistic mix of repeats.
std::string GenerateText(const std::string& fixtures_path) {
  std::ifstream in(fixtures_path);
  std::vector<std::string> words;
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_object() || record.value("cat", "") != "kjv") continue;
    std::istringstream text(record["text"].get<std::string>());
    std::string word;
    while (text >> word) words.push_back(word);
  }
  if (words.empty()) words = {"In", "the", "beginning", "God", "created", "heaven", "earth."};
  std::mt19937 rng(1);
  std::string out;
  while (out.size() < 4'000'000) {
    const int length = std::uniform_int_distribution<int>(10, 40)(rng);
    for (int i = 0; i < length; ++i) {
      const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      out += words[static_cast<size_t>(u * u * static_cast<double>(words.size()))];
      out += i + 1 == length ? ".\n" : (i % 7 == 6 ? ", " : " ");
    }
  }
  return out;
}

std::vector<std::string> Chunk(const std::string& text, size_t chunk_bytes) {
  std::vector<std::string> chunks;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = std::min(text.size(), begin + chunk_bytes);
    const size_t newline = text.find('\n', end);
    end = newline == std::string::npos ? text.size() : newline + 1;
    chunks.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return chunks;
}

struct Pass {
  double seconds = 0;
  int64_t tokens = 0;
};

Pass EncodeAll(const Tokenizer& tokenizer, const std::vector<std::string>& chunks) {
  Pass pass;
  const auto begin = Clock::now();
  for (const std::string& chunk : chunks) {
    auto ids = tokenizer.Encode(chunk, /*add_special_tokens=*/false);
    if (!ids.ok()) {
      std::fprintf(stderr, "encode failed: %s\n", ids.status().ToString().c_str());
      std::exit(1);
    }
    pass.tokens += static_cast<int64_t>(ids->size());
  }
  pass.seconds = Seconds(begin);
  return pass;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tokenizer encode throughput (MB/s of English text, one core)."};
  const std::string data = std::string(MOESERVE_SOURCE_DIR) + "/tests/data/tokenizers/";
  std::vector<std::string> tokenizer_dirs = {data + "kjv-bpe-8k",
                                             data + "deepseek-coder-6.7b-instruct"};
  std::string text_path, output = "bench_results/tokenizer.json";
  size_t chunk_bytes = 4096;
  int repeats = 3;
  app.add_option("--tokenizer", tokenizer_dirs, "tokenizer directories (repeatable)");
  app.add_option("--text", text_path, "UTF-8 text file (default: `bible`, else generated)");
  app.add_option("--chunk-bytes", chunk_bytes, "bytes per Encode call (cut at line ends)");
  app.add_option("--repeats", repeats, "warm passes; the best one is reported");
  app.add_option("--output", output, "JSON report path");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  std::string text, source;
  if (!text_path.empty()) {
    std::FILE* file = std::fopen(text_path.c_str(), "rb");
    if (file == nullptr) {
      std::fprintf(stderr, "cannot open %s\n", text_path.c_str());
      return 1;
    }
    text = ReadAll(file);
    std::fclose(file);
    source = text_path;
  } else if (std::FILE* pipe = popen("bible -f Gen1:1-Rev22:21 2>/dev/null", "r")) {
    text = ReadAll(pipe);
    if (pclose(pipe) == 0 && text.size() > 1'000'000) source = "KJV (bible -f Gen1:1-Rev22:21)";
  }
  if (source.empty()) {
    text = GenerateText(data + "kjv-bpe-8k/fixtures.jsonl");
    source = "generated from the KJV words in kjv-bpe-8k/fixtures.jsonl";
  }
  const std::vector<std::string> chunks = Chunk(text, chunk_bytes);
  const double megabytes = static_cast<double>(text.size()) / 1e6;

  nlohmann::json report = moeserve::bench::MeasurementContext();
  report["benchmark"] = "tokenizer_encode";
  report["text"] = source;
  report["text_bytes"] = text.size();
  report["chunk_bytes"] = chunk_bytes;
  report["threads"] = 1;
  std::printf("Tokenizer encode, one thread, %s: %.2f MB in %zu chunks of ~%zu bytes\n",
              source.c_str(), megabytes, chunks.size(), chunk_bytes);
  std::printf("%-32s | %8s | %12s | %12s | %10s | %11s\n", "tokenizer", "load ms", "cold MB/s",
              "warm MB/s", "tokens", "bytes/token");
  for (const std::string& dir : tokenizer_dirs) {
    const auto load_begin = Clock::now();
    auto tokenizer = Tokenizer::Load(dir);
    const double load_ms = 1e3 * Seconds(load_begin);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
      return 1;
    }
    const Pass cold = EncodeAll(**tokenizer, chunks);
    Pass warm = EncodeAll(**tokenizer, chunks);
    for (int i = 1; i < repeats; ++i) {
      const Pass pass = EncodeAll(**tokenizer, chunks);
      if (pass.seconds < warm.seconds) warm = pass;
    }
    for (const std::string& chunk : chunks) {
      auto ids = (*tokenizer)->Encode(chunk, false);
      if ((*tokenizer)->Decode(*ids) != chunk) {
        std::fprintf(stderr, "%s: decode(encode(chunk)) != chunk\n", dir.c_str());
        return 1;
      }
    }
    const std::string name = dir.substr(dir.find_last_of('/') + 1);
    const double cold_mb_s = megabytes / cold.seconds, warm_mb_s = megabytes / warm.seconds;
    std::printf("%-32s | %8.1f | %12.2f | %12.2f | %10lld | %11.2f\n", name.c_str(), load_ms,
                cold_mb_s, warm_mb_s, static_cast<long long>(warm.tokens),
                static_cast<double>(text.size()) / static_cast<double>(warm.tokens));
    report["results"].push_back(
        {{"tokenizer", name},
         {"load_ms", load_ms},
         {"cold_mb_per_s", cold_mb_s},
         {"warm_mb_per_s", warm_mb_s},
         {"warm_tokens_per_s", static_cast<double>(warm.tokens) / warm.seconds},
         {"tokens", warm.tokens}});
  }
  return moeserve::bench::WriteReport(output, report) ? 0 : 1;
}
