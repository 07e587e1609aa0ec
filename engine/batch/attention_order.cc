#include "engine/batch/attention_order.h"

#include "engine/status_macros.h"

namespace moeserve::engine {

bool UsesAbsorbedMla(MlaForm form, int64_t num_new_tokens) {
  switch (form) {
    case MlaForm::kNaive:
      return false;
    case MlaForm::kAbsorbed:
      return true;
    case MlaForm::kAuto:
      break;
  }
  return num_new_tokens == 1;
}

absl::StatusOr<AttentionOrderedBatch> OrderForAttention(const ForwardBatch& in,
                                                        const ForwardOptions& options) {
  MOESERVE_ASSIGN_OR_RETURN(const std::vector<int64_t> rows, LogitRows(in, options));
  const MlaForm form = options.mla_form;
  const int64_t num_seqs = in.num_seqs();
  std::vector<int64_t> order;  // original sequence index of each new position
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t s = 0; s < num_seqs; ++s) {
      if (UsesAbsorbedMla(form, in.num_new_tokens(s)) == (pass == 0)) order.push_back(s);
    }
  }

  AttentionOrderedBatch out;
  ForwardBatch& b = out.batch;
  b.max_blocks_per_seq = in.max_blocks_per_seq;
  b.query_start_loc.push_back(0);
  std::vector<int32_t> new_first_token(static_cast<size_t>(num_seqs));
  for (int64_t s : order) {
    const int32_t first = in.query_start_loc[s], end = in.query_start_loc[s + 1];
    new_first_token[s] = static_cast<int32_t>(b.token_ids.size());
    b.token_ids.insert(b.token_ids.end(), in.token_ids.begin() + first, in.token_ids.begin() + end);
    b.positions.insert(b.positions.end(), in.positions.begin() + first, in.positions.begin() + end);
    b.slot_mapping.insert(b.slot_mapping.end(), in.slot_mapping.begin() + first,
                          in.slot_mapping.begin() + end);
    b.query_start_loc.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.seq_lens.push_back(in.seq_lens[s]);
    b.block_tables.insert(b.block_tables.end(), in.block_table(s),
                          in.block_table(s) + in.max_blocks_per_seq);
    if (UsesAbsorbedMla(form, end - first)) {
      ++out.num_absorbed_seqs;
      out.num_absorbed_tokens += end - first;
    }
  }
  out.new_index.resize(in.token_ids.size());
  for (int64_t s = 0; s < num_seqs; ++s) {
    for (int32_t i = in.query_start_loc[s]; i < in.query_start_loc[s + 1]; ++i) {
      out.new_index[i] = new_first_token[s] + (i - in.query_start_loc[s]);
    }
  }
  out.logit_rows.reserve(rows.size());
  for (const int64_t row : rows) out.logit_rows.push_back(out.new_index[row]);
  return out;
}

}  // namespace moeserve::engine
