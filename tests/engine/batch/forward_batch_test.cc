// ValidateForwardBatch, the check every backend (and every follower rank, on batches that came
// off the wire) runs before any work: a valid batch passes, and each corruption — including
// ones crafted to overflow index arithmetic — is InvalidArgument, never an out-of-bounds read.
#include "engine/batch/forward_batch.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "tests/testing/random.h"

namespace moeserve::engine {
namespace {

constexpr int64_t kVocab = 1000;
constexpr int64_t kBlocks = 16;

ForwardBatch ValidBatch() {
  testing::TestRng rng(91);
  ForwardBatchBuilder builder;
  builder.AddSequence({3, 7}, 70, {5, 6, 7});
  builder.AddSequence({1}, 0, std::vector<int32_t>(20, 9));
  builder.AddSequence({2, 4, 5}, 130, {static_cast<int32_t>(rng.Int(0, kVocab - 1))});
  return std::move(builder).Build();
}

TEST(ValidateForwardBatchTest, ValidBatchPasses) {
  EXPECT_TRUE(ValidateForwardBatch(ValidBatch(), kVocab, kBlocks).ok());
}

TEST(ValidateForwardBatchTest, EveryCorruptionIsInvalidArgument) {
  const std::vector<std::pair<std::string, std::function<void(ForwardBatch&)>>> corruptions = {
      {"token outside the vocabulary", [](ForwardBatch& b) { b.token_ids[1] = kVocab; }},
      {"negative token", [](ForwardBatch& b) { b.token_ids[0] = -1; }},
      {"negative slot", [](ForwardBatch& b) { b.slot_mapping[2] = -5; }},
      {"slot past the pool", [](ForwardBatch& b) { b.slot_mapping[0] = kBlocks * 64; }},
      {"query_start_loc jumps past the tokens",
       [](ForwardBatch& b) { b.query_start_loc[1] = 100000; }},
      {"query_start_loc decreases", [](ForwardBatch& b) { b.query_start_loc[2] = 1; }},
      {"positions size", [](ForwardBatch& b) { b.positions.pop_back(); }},
      {"negative width", [](ForwardBatch& b) { b.max_blocks_per_seq = -1; }},
      // 3 × 0x5555555555555556 wraps to 2 in 64 bits: must not pass as a 2-entry table.
      {"width crafted to wrap the product",
       [](ForwardBatch& b) {
         b.block_tables.resize(2);
         b.max_blocks_per_seq = 0x5555555555555556;
       }},
      {"block outside the pool", [](ForwardBatch& b) { b.block_tables[0] = kBlocks; }},
      {"seq_len beyond its table", [](ForwardBatch& b) { b.seq_lens[1] = 65; }},
      {"positions not the context's last", [](ForwardBatch& b) { b.positions[0] = 3; }},
  };
  for (const auto& [name, corrupt] : corruptions) {
    ForwardBatch batch = ValidBatch();
    corrupt(batch);
    const absl::Status status = ValidateForwardBatch(batch, kVocab, kBlocks);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << name << ": " << status;
  }
}

void ExpectSameBatch(const ForwardBatch& actual, const ForwardBatch& expected) {
  EXPECT_EQ(actual.token_ids, expected.token_ids);
  EXPECT_EQ(actual.positions, expected.positions);
  EXPECT_EQ(actual.slot_mapping, expected.slot_mapping);
  EXPECT_EQ(actual.query_start_loc, expected.query_start_loc);
  EXPECT_EQ(actual.seq_lens, expected.seq_lens);
  EXPECT_EQ(actual.block_tables, expected.block_tables);
  EXPECT_EQ(actual.max_blocks_per_seq, expected.max_blocks_per_seq);
}

// RowsOnly keeps each sequence's last tokens with its whole context: the same batch as one
// built directly for those tokens on top of the others already cached.
TEST(RowsOnlyTest, EqualsTheBatchOfTheLastTokensAlone) {
  const ForwardBatch batch = ValidBatch();
  ForwardOptions options;
  options.logits_per_sequence = {2, 1, 1};
  const absl::StatusOr<std::vector<int64_t>> rows = LogitRows(batch, options);
  ASSERT_TRUE(rows.ok()) << rows.status();
  const ForwardBatch sub = RowsOnly(batch, *rows);

  ForwardBatchBuilder direct_builder;
  direct_builder.AddSequence({3, 7}, 71, {6, 7});
  direct_builder.AddSequence({1}, 19, {9});
  direct_builder.AddSequence({2, 4, 5}, 130, {batch.token_ids.back()});
  const ForwardBatch direct = std::move(direct_builder).Build();
  ExpectSameBatch(sub, direct);
  EXPECT_TRUE(ValidateForwardBatch(sub, kVocab, kBlocks).ok());
}

// A sequence may ask for no logits only where the caller allows it (ForwardMtp's latents-only
// positions); RowsOnly then leaves that sequence out, context and block table included.
TEST(RowsOnlyTest, ZeroLogitRowsOnlyWhereAllowedAndTheSequenceIsLeftOut) {
  const ForwardBatch batch = ValidBatch();
  ForwardOptions options;
  options.logits_per_sequence = {2, 0, 1};
  EXPECT_TRUE(absl::IsInvalidArgument(LogitRows(batch, options).status()));
  const absl::StatusOr<std::vector<int64_t>> rows =
      LogitRows(batch, options, ZeroLogitRows::kAllowed);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, (std::vector<int64_t>{1, 2, 23}));
  options.logits_per_sequence = {2, -1, 1};
  EXPECT_TRUE(absl::IsInvalidArgument(LogitRows(batch, options, ZeroLogitRows::kAllowed).status()));

  ForwardBatchBuilder direct_builder;
  direct_builder.AddSequence({3, 7}, 71, {6, 7});
  direct_builder.AddSequence({2, 4, 5}, 130, {batch.token_ids.back()});
  const ForwardBatch direct = std::move(direct_builder).Build();
  const ForwardBatch sub = RowsOnly(batch, *rows);
  ExpectSameBatch(sub, direct);
  EXPECT_TRUE(ValidateForwardBatch(sub, kVocab, kBlocks).ok());
  EXPECT_EQ(RowsOnly(batch, {}).num_seqs(), 0);
}

// The CUDA backend's way to serve zeros: one row for every sequence, then the asked ones kept.
TEST(KeepAskedRowsTest, DropsTheRowsOfSequencesThatAskedNone) {
  constexpr int64_t kRowVocab = 3, kHidden = 2;
  ForwardOptions options;
  options.logits_per_sequence = {0, 2, 0, 1};
  const ForwardOptions widened = WithLogitRowForEverySequence(options);
  EXPECT_EQ(widened.logits_per_sequence, (std::vector<int32_t>{1, 2, 1, 1}));
  // Computed rows 0..4: sequence 0 → row 0, 1 → rows 1-2, 2 → row 3, 3 → row 4.
  ForwardOutput out;
  for (int row = 0; row < 5; ++row) {
    for (int v = 0; v < kRowVocab; ++v) out.logits.push_back(static_cast<float>(10 * row + v));
    for (int d = 0; d < kHidden; ++d) out.hidden.push_back(static_cast<float>(-10 * row - d));
  }
  const ForwardOutput kept = KeepAskedRows(out, options, kRowVocab, kHidden);
  EXPECT_EQ(kept.logits, (std::vector<float>{10, 11, 12, 20, 21, 22, 40, 41, 42}));
  EXPECT_EQ(kept.hidden, (std::vector<float>{-10, -11, -20, -21, -40, -41}));

  // All zeros: one row each, which is the default (empty) form; nothing is kept.
  options.logits_per_sequence = {0, 0};
  EXPECT_TRUE(WithLogitRowForEverySequence(options).logits_per_sequence.empty());
  out.logits.resize(2 * kRowVocab);
  out.hidden.resize(2 * kHidden);
  EXPECT_TRUE(KeepAskedRows(out, options, kRowVocab, kHidden).logits.empty());
  // Nothing asked per sequence: the output as it is.
  EXPECT_EQ(KeepAskedRows(out, ForwardOptions{}, kRowVocab, kHidden).logits, out.logits);
}

// SequencesOf picks whole sequences in the order asked: the same batch as one built from them.
TEST(SequencesOfTest, EqualsTheBatchOfThoseSequencesAlone) {
  const ForwardBatch batch = ValidBatch();
  const std::vector<int64_t> seqs = {2, 0};
  const ForwardBatch picked = SequencesOf(batch, seqs);
  ForwardBatchBuilder direct_builder;
  direct_builder.AddSequence({2, 4, 5}, 130, {batch.token_ids.back()});
  direct_builder.AddSequence({3, 7}, 70, {5, 6, 7});
  const ForwardBatch direct = std::move(direct_builder).Build();
  EXPECT_EQ(picked.max_blocks_per_seq, 3);
  ExpectSameBatch(picked, direct);
  EXPECT_TRUE(ValidateForwardBatch(picked, kVocab, kBlocks).ok());
}

}  // namespace
}  // namespace moeserve::engine
