// The MTP module's forward against the PyTorch oracle (tools/oracle/make_mtp_golden.py, written
// from the DeepSeek-V3 report §2.2 around transformers' decoder layer): for prompts of several
// lengths, the main model's final-normed hidden states and the shifted tokens go through
// ForwardMtp, and its logits at every position must match within 1e-4 relative error — on the
// reference kernels and on the fast kernels (in fp32, FP8 presets with activation quantization
// off, as the oracle dequantizes the weights). Also with logits for the last positions only,
// where the others contribute only their cached latents.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/batch/forward_batch.h"
#include "engine/io/npy.h"
#include "engine/model/deepseek_model.h"
#include "nlohmann/json.hpp"
#include "tests/testing/random.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

constexpr double kMaxRelativeError = 1e-4;

struct MtpGoldenCase {
  const char* golden_name;
  const char* preset;
  bool fp8;
  std::optional<int64_t> mtp_layers;  // the preset's own when unset
  CpuKernels kernels;
  // A checkpoint in the source tree instead of a generated preset (the bundled trained model).
  const char* source_dir = nullptr;
};

void PrintTo(const MtpGoldenCase& c, std::ostream* os) { *os << c.golden_name; }

class MtpGoldenTest : public ::testing::TestWithParam<MtpGoldenCase> {};

TEST_P(MtpGoldenTest, MtpLogitsMatchOracle) {
  const MtpGoldenCase& param = GetParam();
  const std::string dir = std::string(MOESERVE_SOURCE_DIR) + "/tests/golden/" + param.golden_name;
  std::ifstream in(dir + "/mtp_manifest.json");
  ASSERT_TRUE(in) << "missing " << dir << "/mtp_manifest.json";
  const nlohmann::json manifest = nlohmann::json::parse(in);
  auto golden = ReadNpyFloat32(dir + "/mtp_logits.npy");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const std::string model_dir =
      param.source_dir != nullptr
          ? std::string(MOESERVE_SOURCE_DIR) + "/" + param.source_dir
          : moeserve::testing::TestCheckpointDir(param.preset, param.fp8, 1234, param.mtp_layers);
  auto model = DeepseekModel::Load(
      model_dir, {.cpu_kernels = param.kernels, .kv_cache_dtype = DType::kF32, .load_mtp = true});
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->num_mtp_modules(), 1);
  const int64_t vocab = (*model)->config().vocab_size;
  const int64_t hidden = (*model)->config().hidden_size;
  const int64_t max_len = golden->shape[1];
  ASSERT_EQ(golden->shape[2], vocab);

  const auto prompts = manifest["prompts"].get<std::vector<std::vector<int32_t>>>();
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<int32_t>& ids = prompts[p];
    const int64_t n = static_cast<int64_t>(ids.size()) - 1;  // positions with a next token
    const int64_t blocks = (n + kKvBlockSize) / kKvBlockSize;
    KvPages pages = (*model)->MakeKvPages(blocks);
    std::vector<int32_t> table(blocks);
    for (int64_t b = 0; b < blocks; ++b) table[b] = static_cast<int32_t>(b);
    ForwardOptions options{.logits_for = LogitsFor::kAllTokens, .quantize_activations = false};

    ForwardBatchBuilder main_builder;
    main_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).subspan(0, n));
    auto main = (*model)->ForwardWithHidden(std::move(main_builder).Build(), pages, options);
    ASSERT_TRUE(main.ok()) << main.status();
    ASSERT_EQ(static_cast<int64_t>(main->hidden.size()), n * hidden);

    ForwardBatchBuilder mtp_builder;
    mtp_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).subspan(1, n));
    auto mtp =
        (*model)->ForwardMtp(0, std::move(mtp_builder).Build(), main->hidden, pages, options);
    ASSERT_TRUE(mtp.ok()) << mtp.status();

    double max_diff = 0.0, max_ref = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* ours = mtp->logits.data() + i * vocab;
      const float* ref = golden->data.data() + (p * max_len + i) * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(ours[v]) - ref[v]));
        max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[v])));
      }
    }
    const double relative = max_diff / max_ref;
    std::printf("[ mtp      ] %s prompt %zu (%zu tokens): max relative error %.3g\n",
                param.golden_name, p, ids.size(), relative);
    EXPECT_LE(relative, kMaxRelativeError)
        << "prompt " << p << "; if make-model or the oracle changed on purpose, regenerate with "
        << "tools/oracle/regenerate_goldens.sh";

    // With logits for the last m positions only, the earlier positions write just their
    // latents (the speculative step's form); on an empty cache, the m rows must still match.
    for (const int32_t m : {1, 2}) {
      if (m > n) continue;
      KvPages fresh = (*model)->MakeKvPages(blocks);
      ForwardBatchBuilder rows_builder;
      rows_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).subspan(1, n));
      ForwardOptions last_rows{.quantize_activations = false, .logits_per_sequence = {m}};
      auto last =
          (*model)->ForwardMtp(0, std::move(rows_builder).Build(), main->hidden, fresh, last_rows);
      ASSERT_TRUE(last.ok()) << last.status();
      ASSERT_EQ(static_cast<int64_t>(last->logits.size()), m * vocab);
      double last_diff = 0.0;
      for (int64_t r = 0; r < m; ++r) {
        const float* ours = last->logits.data() + r * vocab;
        const float* ref = golden->data.data() + (p * max_len + n - m + r) * vocab;
        for (int64_t v = 0; v < vocab; ++v) {
          last_diff = std::max(last_diff, std::fabs(static_cast<double>(ours[v]) - ref[v]));
        }
      }
      EXPECT_LE(last_diff / max_ref, kMaxRelativeError)
          << "prompt " << p << ", logits for the last " << m << " positions only";
    }

    // A pass that asks for no logits (a step while speculation pauses) still writes every
    // position's latents: the last position, run alone afterwards, must match the golden.
    if (n >= 2) {
      KvPages paused = (*model)->MakeKvPages(blocks);
      ForwardBatchBuilder latents_builder;
      latents_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).subspan(1, n - 1));
      ForwardOptions no_rows{.quantize_activations = false, .logits_per_sequence = {0}};
      auto none = (*model)->ForwardMtp(0, std::move(latents_builder).Build(),
                                       absl::MakeConstSpan(main->hidden).first((n - 1) * hidden),
                                       paused, no_rows);
      ASSERT_TRUE(none.ok()) << none.status();
      EXPECT_TRUE(none->logits.empty());
      EXPECT_TRUE(none->hidden.empty());
      ForwardBatchBuilder last_builder;
      last_builder.AddSequence(table, n - 1, absl::MakeConstSpan(ids).subspan(n, 1));
      auto resumed =
          (*model)->ForwardMtp(0, std::move(last_builder).Build(),
                               absl::MakeConstSpan(main->hidden).subspan((n - 1) * hidden, hidden),
                               paused, ForwardOptions{.quantize_activations = false});
      ASSERT_TRUE(resumed.ok()) << resumed.status();
      ASSERT_EQ(static_cast<int64_t>(resumed->logits.size()), vocab);
      double resumed_diff = 0.0;
      const float* ref = golden->data.data() + (p * max_len + n - 1) * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        resumed_diff =
            std::max(resumed_diff, std::fabs(static_cast<double>(resumed->logits[v]) - ref[v]));
      }
      EXPECT_LE(resumed_diff / max_ref, kMaxRelativeError)
          << "prompt " << p << ", last position after a pass without logits";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Presets, MtpGoldenTest,
    ::testing::Values(
        MtpGoldenCase{"tiny-v3", "tiny-v3", false, std::nullopt, CpuKernels::kReference},
        MtpGoldenCase{"tiny-v3", "tiny-v3", false, std::nullopt, CpuKernels::kFast},
        MtpGoldenCase{"tiny-v3-fp8", "tiny-v3", true, std::nullopt, CpuKernels::kReference},
        MtpGoldenCase{"tiny-v3-fp8", "tiny-v3", true, std::nullopt, CpuKernels::kFast},
        MtpGoldenCase{"tiny-v2-lite-mtp", "tiny-v2-lite", false, 1, CpuKernels::kReference},
        // The bundled model's trained module (golden: tools/oracle/make_mtp_golden.py --model
        // models/kjv-v3-tiny --out tests/golden/kjv-v3-tiny, in tools/train/README.md).
        MtpGoldenCase{"kjv-v3-tiny", "", false, std::nullopt, CpuKernels::kReference,
                      "models/kjv-v3-tiny"},
        MtpGoldenCase{"kjv-v3-tiny", "", false, std::nullopt, CpuKernels::kFast,
                      "models/kjv-v3-tiny"}),
    [](const auto& info) {
      std::string name = absl::StrCat(info.param.golden_name, "_",
                                      info.param.kernels == CpuKernels::kFast ? "fast" : "ref");
      for (char& c : name) {
        if (c == '-') c = '_';
      }
      return name;
    });

// A pass that asks rows of only some sequences (the others, 0, only write latents: prefill
// chunks that do not sample yet, sequences that draft nothing) gives those rows bit for bit as
// the pass with one row each, and leaves the module's cache layer byte for byte the same; with
// no rows at all, the same cache. On the fast kernels and a BF16 cache, as served.
TEST(MtpRowsTest, RowsOfSomeSequencesAndTheirLatentsEqualTheFullPass) {
  auto model = DeepseekModel::Load(moeserve::testing::TestCheckpointDir("tiny-v3", false, 1234),
                                   {.cpu_kernels = CpuKernels::kFast, .load_mtp = true});
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& config = (*model)->config();
  testing::TestRng rng(2026);
  const std::vector<int64_t> lengths = {5, 9, 3};
  ForwardBatchBuilder main_builder, mtp_builder;
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<int32_t> ids(static_cast<size_t>(lengths[s] + 1));
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.Int(0, config.vocab_size - 1));
    const std::vector<int32_t> table = {static_cast<int32_t>(s)};
    main_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).first(lengths[s]));
    mtp_builder.AddSequence(table, 0, absl::MakeConstSpan(ids).subspan(1));
  }
  const ForwardBatch mtp_batch = std::move(mtp_builder).Build();
  const int64_t blocks = static_cast<int64_t>(lengths.size());
  KvPages main_pages = (*model)->MakeKvPages(blocks);
  auto main = (*model)->ForwardWithHidden(std::move(main_builder).Build(), main_pages);
  ASSERT_TRUE(main.ok()) << main.status();

  const int64_t mtp_layer = config.num_hidden_layers;
  const auto pass = [&](std::vector<int32_t> rows, KvPages& pages) {
    return (*model)->ForwardMtp(0, mtp_batch, main->hidden, pages,
                                ForwardOptions{.logits_per_sequence = std::move(rows)});
  };
  const auto same_cache = [&](const KvPages& a, const KvPages& b) {
    return std::memcmp(a.layer(mtp_layer).data, b.layer(mtp_layer).data,
                       static_cast<size_t>(a.layer_bytes())) == 0;
  };
  KvPages full_pages = (*model)->MakeKvPages(blocks);
  auto full = pass({}, full_pages);
  ASSERT_TRUE(full.ok()) << full.status();
  const int64_t vocab = config.vocab_size, hidden = config.hidden_size;
  ASSERT_EQ(full->logits.size(), static_cast<size_t>(3 * vocab));

  KvPages some_pages = (*model)->MakeKvPages(blocks);
  auto some = pass({0, 1, 0}, some_pages);
  ASSERT_TRUE(some.ok()) << some.status();
  EXPECT_EQ(some->logits,
            std::vector<float>(full->logits.begin() + vocab, full->logits.begin() + 2 * vocab));
  EXPECT_EQ(some->hidden,
            std::vector<float>(full->hidden.begin() + hidden, full->hidden.begin() + 2 * hidden));
  EXPECT_TRUE(same_cache(some_pages, full_pages)) << "rows for the middle sequence only";

  KvPages none_pages = (*model)->MakeKvPages(blocks);
  auto none = pass({0, 0, 0}, none_pages);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->logits.empty());
  EXPECT_TRUE(same_cache(none_pages, full_pages)) << "no rows";
}

}  // namespace
}  // namespace moeserve::engine
