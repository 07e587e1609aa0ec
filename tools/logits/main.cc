// moeserve-logits: runs the CPU forward on token-id sequences and writes float32 logits.
//   moeserve-logits --model DIR --input ids.json --output logits.npy
// ids.json is a JSON list of token-id lists. The output is [sequences, positions, vocab],
// padded with NaN where a sequence is shorter than the longest. All sequences run as one
// batched prefill, so the tool also exercises batching.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/cli/command_line.h"
#include "engine/io/npy.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "nlohmann/json.hpp"

namespace {

using moeserve::engine::ForwardOptions;
using moeserve::engine::LogitsFor;
using moeserve::engine::MlaForm;

int Fail(const std::string& message) {
  std::fprintf(stderr, "moeserve-logits: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs the CPU forward pass and writes logits as .npy."};
  std::string model_dir, input_path, output_path, mla_form = "auto", kv_cache_dtype = "fp32";
  bool no_activation_quant = false;
  app.add_option("--model", model_dir, "checkpoint directory (HF layout)")->required();
  app.add_option("--input", input_path, "JSON list of token-id lists")->required();
  app.add_option("--output", output_path, "output .npy path")->required();
  app.add_option("--mla-form", mla_form, "auto | naive | absorbed")
      ->check(CLI::IsMember({"auto", "naive", "absorbed"}));
  app.add_option("--kv-cache-dtype", kv_cache_dtype,
                 "latent cache elements: fp32 (the default here: logits to compare with an fp32 "
                 "oracle) or bf16 (the server's default for --cpu-kernels fast)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_flag("--no-activation-quant", no_activation_quant,
               "do not round FP8 linears' inputs through e4m3");
  if (std::optional<int> exit_status = moeserve::engine::ParseCommandLine(app, argc, argv)) {
    return *exit_status;
  }

  std::ifstream in(input_path);
  if (!in) return Fail("cannot open --input " + input_path);
  const nlohmann::json ids = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::vector<std::vector<int32_t>> sequences;
  if (!ids.is_array() || ids.empty()) return Fail(input_path + ": expected a list of lists");
  for (const auto& seq : ids) {
    if (!seq.is_array() || seq.empty())
      return Fail(input_path + ": each entry must be a non-empty list");
    std::vector<int32_t>& out = sequences.emplace_back();
    for (const auto& id : seq) {
      if (!id.is_number_integer()) return Fail(input_path + ": token ids must be integers");
      out.push_back(id.get<int32_t>());
    }
  }

  auto model = moeserve::engine::DeepseekModel::Load(
      model_dir, {.kv_cache_dtype = moeserve::engine::ParseKvCacheDtype(kv_cache_dtype)});
  if (!model.ok()) return Fail(model.status().ToString());

  ForwardOptions options;
  options.logits_for = LogitsFor::kAllTokens;
  options.quantize_activations = !no_activation_quant;
  options.mla_form = mla_form == "naive"      ? MlaForm::kNaive
                     : mla_form == "absorbed" ? MlaForm::kAbsorbed
                                              : MlaForm::kAuto;
  size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  moeserve::engine::OfflineRunner runner(**model, static_cast<int64_t>(sequences.size()),
                                         static_cast<int64_t>(longest));
  auto logits = runner.Step(sequences, options);
  if (!logits.ok()) return Fail(logits.status().ToString());

  const int64_t vocab = (*model)->config().vocab_size;
  const int64_t num_seqs = static_cast<int64_t>(sequences.size());
  std::vector<float> padded(static_cast<size_t>(num_seqs * longest * vocab),
                            std::numeric_limits<float>::quiet_NaN());
  int64_t row = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (size_t p = 0; p < sequences[s].size(); ++p, ++row) {
      std::copy(logits->begin() + row * vocab, logits->begin() + (row + 1) * vocab,
                padded.begin() + (s * longest + p) * vocab);
    }
  }
  const absl::Status written = moeserve::engine::WriteNpyFloat32(
      output_path, {num_seqs, static_cast<int64_t>(longest), vocab}, padded);
  if (!written.ok()) return Fail(written.ToString());
  std::printf("wrote logits [%lld, %zu, %lld] to %s\n", static_cast<long long>(num_seqs), longest,
              static_cast<long long>(vocab), output_path.c_str());
  return 0;
}
