#include "engine/batch/forward_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace moeserve::engine {

void ForwardBatchBuilder::AddSequence(absl::Span<const int32_t> block_table, int64_t num_computed,
                                      absl::Span<const int32_t> new_token_ids) {
  if (batch_.query_start_loc.empty()) batch_.query_start_loc.push_back(0);
  for (size_t i = 0; i < new_token_ids.size(); ++i) {
    const int64_t position = num_computed + static_cast<int64_t>(i);
    batch_.token_ids.push_back(new_token_ids[i]);
    batch_.positions.push_back(static_cast<int32_t>(position));
    batch_.slot_mapping.push_back(static_cast<int64_t>(block_table[position / kKvBlockSize]) *
                                      kKvBlockSize +
                                  position % kKvBlockSize);
  }
  batch_.query_start_loc.push_back(static_cast<int32_t>(batch_.token_ids.size()));
  batch_.seq_lens.push_back(static_cast<int32_t>(num_computed + new_token_ids.size()));
  block_tables_.emplace_back(block_table.begin(), block_table.end());
}

ForwardBatch ForwardBatchBuilder::Build() && {
  size_t width = 0;
  for (const auto& table : block_tables_) width = std::max(width, table.size());
  batch_.max_blocks_per_seq = static_cast<int64_t>(width);
  batch_.block_tables.assign(block_tables_.size() * width, 0);
  for (size_t s = 0; s < block_tables_.size(); ++s) {
    std::copy(block_tables_[s].begin(), block_tables_[s].end(),
              batch_.block_tables.begin() + s * width);
  }
  if (batch_.query_start_loc.empty()) batch_.query_start_loc.push_back(0);
  return std::move(batch_);
}

absl::Status ValidateForwardBatch(const ForwardBatch& b, int64_t vocab_size,
                                  int64_t num_kv_blocks) {
  const int64_t num_tokens = b.num_tokens();
  if (static_cast<int64_t>(b.positions.size()) != num_tokens ||
      static_cast<int64_t>(b.slot_mapping.size()) != num_tokens) {
    return absl::InvalidArgumentError("ForwardBatch: positions/slot_mapping size != num_tokens");
  }
  if (static_cast<int64_t>(b.query_start_loc.size()) != b.num_seqs() + 1 ||
      b.query_start_loc.front() != 0 || b.query_start_loc.back() != num_tokens) {
    return absl::InvalidArgumentError("ForwardBatch: query_start_loc does not cover the tokens");
  }
  for (int64_t s = 0; s < b.num_seqs(); ++s) {
    if (b.query_start_loc[s + 1] < b.query_start_loc[s]) {
      return absl::InvalidArgumentError("ForwardBatch: query_start_loc decreases");
    }
  }
  // Bounded first, so the products below cannot overflow (a batch may come off the wire:
  // step_broadcast.h).
  if (b.max_blocks_per_seq < 0 || b.max_blocks_per_seq > kMaxBlocksPerSeq) {
    return absl::InvalidArgumentError(
        absl::StrCat("ForwardBatch: max_blocks_per_seq ", b.max_blocks_per_seq));
  }
  if (static_cast<int64_t>(b.block_tables.size()) != b.num_seqs() * b.max_blocks_per_seq) {
    return absl::InvalidArgumentError("ForwardBatch: block_tables size != num_seqs * width");
  }
  for (int64_t t = 0; t < num_tokens; ++t) {
    if (b.token_ids[t] < 0 || b.token_ids[t] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", b.token_ids[t], " at index ", t,
                                                     " is outside the vocabulary [0, ", vocab_size,
                                                     ")"));
    }
    // -1 marks a padding token that writes no KV (decode_padding.h); other negatives are bad.
    if (b.slot_mapping[t] < -1 || b.slot_mapping[t] >= num_kv_blocks * kKvBlockSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("slot ", b.slot_mapping[t], " at index ", t, " is beyond the KV pages"));
    }
  }
  for (int64_t s = 0; s < b.num_seqs(); ++s) {
    const int64_t n = b.num_new_tokens(s);
    if (n < 0 || b.seq_lens[s] < n || b.seq_lens[s] > b.max_blocks_per_seq * kKvBlockSize) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": seq_len ", b.seq_lens[s],
                                                     " with ", n,
                                                     " new tokens does not fit its block table"));
    }
    for (int64_t i = 0; i < n; ++i) {
      if (b.positions[b.query_start_loc[s] + i] != b.seq_lens[s] - n + i) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, ": positions are not the last ", n, " of its context"));
      }
    }
    for (int64_t j = 0; j < (b.seq_lens[s] + kKvBlockSize - 1) / kKvBlockSize; ++j) {
      const int32_t block = b.block_table(s)[j];
      if (block < 0 || block >= num_kv_blocks) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, ": block id ", block, " is outside the KV pages"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> LogitRows(const ForwardBatch& batch,
                                               const ForwardOptions& options, ZeroLogitRows zero) {
  std::vector<int64_t> rows;
  if (options.logits_for == LogitsFor::kAllTokens) {
    for (int64_t t = 0; t < batch.num_tokens(); ++t) rows.push_back(t);
    return rows;
  }
  const bool counted = !options.logits_per_sequence.empty();
  if (counted && static_cast<int64_t>(options.logits_per_sequence.size()) != batch.num_seqs()) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits_per_sequence has ", options.logits_per_sequence.size(),
                     " entries for ", batch.num_seqs(), " sequences"));
  }
  const int64_t least = zero == ZeroLogitRows::kAllowed ? 0 : 1;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    const int64_t n = counted ? options.logits_per_sequence[s] : 1;
    if (n < least || n > batch.num_new_tokens(s)) {
      return absl::InvalidArgumentError(absl::StrCat("logits_per_sequence[", s, "] = ", n,
                                                     " is outside [", least, ", ",
                                                     batch.num_new_tokens(s), "]"));
    }
    for (int64_t t = batch.query_start_loc[s + 1] - n; t < batch.query_start_loc[s + 1]; ++t) {
      rows.push_back(t);
    }
  }
  return rows;
}

ForwardOptions WithLogitRowForEverySequence(const ForwardOptions& options) {
  ForwardOptions widened = options;
  bool all_one = true;
  for (int32_t& n : widened.logits_per_sequence) {
    n = std::max(n, 1);
    all_one = all_one && n == 1;
  }
  if (all_one) widened.logits_per_sequence.clear();
  return widened;
}

ForwardOutput KeepAskedRows(ForwardOutput out, const ForwardOptions& options, int64_t vocab,
                            int64_t hidden) {
  // Rows move only towards the front, so the copy can run in place.
  int64_t from = 0, to = 0;
  for (const int32_t asked : options.logits_per_sequence) {
    const int64_t computed = std::max(asked, 1);
    if (asked > 0) {
      std::copy_n(out.logits.begin() + from * vocab, asked * vocab,
                  out.logits.begin() + to * vocab);
      std::copy_n(out.hidden.begin() + from * hidden, asked * hidden,
                  out.hidden.begin() + to * hidden);
      to += asked;
    }
    from += computed;
  }
  if (!options.logits_per_sequence.empty()) {
    out.logits.resize(static_cast<size_t>(to * vocab));
    out.hidden.resize(static_cast<size_t>(to * hidden));
  }
  return out;
}

ForwardBatch RowsOnly(const ForwardBatch& batch, absl::Span<const int64_t> rows) {
  ForwardBatch out;
  out.query_start_loc.push_back(0);
  out.max_blocks_per_seq = batch.max_blocks_per_seq;
  size_t r = 0;
  for (int64_t s = 0; s < batch.num_seqs(); ++s) {
    const size_t first = r;
    for (; r < rows.size() && rows[r] < batch.query_start_loc[s + 1]; ++r) {
      out.token_ids.push_back(batch.token_ids[rows[r]]);
      out.positions.push_back(batch.positions[rows[r]]);
      out.slot_mapping.push_back(batch.slot_mapping[rows[r]]);
    }
    if (r == first) continue;
    out.query_start_loc.push_back(static_cast<int32_t>(out.token_ids.size()));
    out.seq_lens.push_back(batch.seq_lens[s]);
    out.block_tables.insert(out.block_tables.end(), batch.block_table(s),
                            batch.block_table(s) + batch.max_blocks_per_seq);
  }
  return out;
}

ForwardBatch SequencesOf(const ForwardBatch& batch, absl::Span<const int64_t> seqs) {
  ForwardBatch out;
  out.query_start_loc.push_back(0);
  out.max_blocks_per_seq = batch.max_blocks_per_seq;
  for (const int64_t s : seqs) {
    const int32_t first = batch.query_start_loc[s], end = batch.query_start_loc[s + 1];
    out.token_ids.insert(out.token_ids.end(), batch.token_ids.begin() + first,
                         batch.token_ids.begin() + end);
    out.positions.insert(out.positions.end(), batch.positions.begin() + first,
                         batch.positions.begin() + end);
    out.slot_mapping.insert(out.slot_mapping.end(), batch.slot_mapping.begin() + first,
                            batch.slot_mapping.begin() + end);
    out.query_start_loc.push_back(static_cast<int32_t>(out.token_ids.size()));
    out.seq_lens.push_back(batch.seq_lens[s]);
    out.block_tables.insert(out.block_tables.end(), batch.block_table(s),
                            batch.block_table(s) + batch.max_blocks_per_seq);
  }
  return out;
}

}  // namespace moeserve::engine
