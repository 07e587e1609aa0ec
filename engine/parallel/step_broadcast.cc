#include "engine/parallel/step_broadcast.h"

#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moeserve::engine {
namespace {

// "MSS1": moeserve step, version 1. A follower built from other sources refuses the message.
constexpr uint32_t kMagic = 0x3153534d;

class Writer {
 public:
  void Scalar(int64_t value) { Raw(&value, sizeof(value)); }
  template <typename T>
  void Array(const std::vector<T>& values) {
    Scalar(static_cast<int64_t>(values.size()));
    if (!values.empty()) Raw(values.data(), values.size() * sizeof(T));
  }
  std::string Take() && { return std::move(out_); }

 private:
  void Raw(const void* data, size_t bytes) { out_.append(static_cast<const char*>(data), bytes); }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}

  absl::StatusOr<int64_t> Scalar(const char* what) {
    int64_t value = 0;
    if (in_.size() - offset_ < sizeof(value)) return Truncated(what);
    std::memcpy(&value, in_.data() + offset_, sizeof(value));
    offset_ += sizeof(value);
    return value;
  }
  template <typename T>
  absl::Status Array(const char* what, std::vector<T>& out) {
    absl::StatusOr<int64_t> count = Scalar(what);
    if (!count.ok()) return count.status();
    const size_t left = in_.size() - offset_;
    if (*count < 0 || static_cast<uint64_t>(*count) > left / sizeof(T)) {
      return absl::DataLossError(absl::StrCat("step message: ", what, " claims ", *count,
                                              " elements, ", left, " bytes are left"));
    }
    out.resize(static_cast<size_t>(*count));
    if (*count > 0) std::memcpy(out.data(), in_.data() + offset_, out.size() * sizeof(T));
    offset_ += out.size() * sizeof(T);
    return absl::OkStatus();
  }
  bool done() const { return offset_ == in_.size(); }

 private:
  absl::Status Truncated(const char* what) const {
    return absl::DataLossError(absl::StrCat("step message truncated at ", what, " (offset ",
                                            offset_, " of ", in_.size(), ")"));
  }
  const std::string& in_;
  size_t offset_ = 0;
};

template <typename Enum>
absl::StatusOr<Enum> CheckedEnum(int64_t value, int64_t first, int64_t last, const char* what) {
  if (value < first || value > last) {
    return absl::DataLossError(absl::StrCat("step message: ", what, " = ", value));
  }
  return static_cast<Enum>(value);
}

}  // namespace

std::string EncodeStep(const StepMessage& step) {
  Writer w;
  w.Scalar(kMagic);
  w.Scalar(static_cast<int64_t>(step.kind));
  w.Scalar(static_cast<int64_t>(step.options.mla_form));
  w.Scalar(static_cast<int64_t>(step.options.logits_for));
  w.Scalar(step.options.quantize_activations ? 1 : 0);
  const ForwardBatch& b = step.batch;
  w.Array(b.token_ids);
  w.Array(b.positions);
  w.Array(b.slot_mapping);
  w.Array(b.query_start_loc);
  w.Array(b.seq_lens);
  w.Array(b.block_tables);
  w.Scalar(b.max_blocks_per_seq);
  return std::move(w).Take();
}

absl::StatusOr<StepMessage> DecodeStep(const std::string& bytes) {
  Reader r(bytes);
  absl::StatusOr<int64_t> magic = r.Scalar("magic");
  if (!magic.ok()) return magic.status();
  if (*magic != kMagic) {
    return absl::DataLossError(absl::StrCat("step message: magic ", *magic, ", expected ", kMagic,
                                            " (is every node running the same moeserve?)"));
  }
  StepMessage step;
  int64_t fields[4];
  const char* names[4] = {"kind", "mla_form", "logits_for", "quantize_activations"};
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<int64_t> value = r.Scalar(names[i]);
    if (!value.ok()) return value.status();
    fields[i] = *value;
  }
  absl::StatusOr<StepMessage::Kind> kind = CheckedEnum<StepMessage::Kind>(fields[0], 1, 3, "kind");
  absl::StatusOr<MlaForm> form = CheckedEnum<MlaForm>(fields[1], 0, 2, "mla_form");
  absl::StatusOr<LogitsFor> logits = CheckedEnum<LogitsFor>(fields[2], 0, 1, "logits_for");
  absl::StatusOr<bool> quantize = CheckedEnum<bool>(fields[3], 0, 1, "quantize_activations");
  for (const absl::Status& s : {kind.status(), form.status(), logits.status(), quantize.status()}) {
    if (!s.ok()) return s;
  }
  step.kind = *kind;
  step.options = {.mla_form = *form, .logits_for = *logits, .quantize_activations = *quantize};
  ForwardBatch& b = step.batch;
  for (const absl::Status& s :
       {r.Array("token_ids", b.token_ids), r.Array("positions", b.positions),
        r.Array("slot_mapping", b.slot_mapping), r.Array("query_start_loc", b.query_start_loc),
        r.Array("seq_lens", b.seq_lens), r.Array("block_tables", b.block_tables)}) {
    if (!s.ok()) return s;
  }
  absl::StatusOr<int64_t> width = r.Scalar("max_blocks_per_seq");
  if (!width.ok()) return width.status();
  b.max_blocks_per_seq = *width;
  if (!r.done()) return absl::DataLossError("step message: bytes left after the last field");
  // The shapes the forward relies on; ValidateForwardBatch checks the values on every rank.
  // Division, not multiplication: a crafted width must not wrap the product.
  const size_t tokens = b.token_ids.size(), seqs = b.seq_lens.size();
  const size_t table = b.block_tables.size();
  const bool width_ok =
      b.max_blocks_per_seq >= 0 && b.max_blocks_per_seq <= kMaxBlocksPerSeq &&
      (seqs == 0 ? table == 0
                 : table % seqs == 0 && table / seqs == static_cast<size_t>(b.max_blocks_per_seq));
  if (b.positions.size() != tokens || b.slot_mapping.size() != tokens ||
      (b.query_start_loc.size() != seqs + 1 && !(seqs == 0 && b.query_start_loc.empty())) ||
      !width_ok) {
    return absl::DataLossError(absl::StrCat("step message: inconsistent batch shapes (", tokens,
                                            " tokens, ", seqs, " sequences, block table width ",
                                            b.max_blocks_per_seq, ")"));
  }
  return step;
}

absl::Status ExchangeStep(Communicator& comm, StepMessage& step) {
  std::string bytes = comm.rank() == 0 ? EncodeStep(step) : std::string();
  if (absl::Status s = comm.BroadcastBytes(bytes, 0); !s.ok()) return s;
  if (comm.rank() == 0) return absl::OkStatus();
  absl::StatusOr<StepMessage> received = DecodeStep(bytes);
  if (!received.ok()) return received.status();
  step = *std::move(received);
  return absl::OkStatus();
}

absl::Status FollowSteps(Communicator& comm,
                         const std::function<absl::Status(const StepMessage&)>& run_step) {
  while (true) {
    StepMessage step;
    if (absl::Status s = ExchangeStep(comm, step); !s.ok()) return s;
    if (step.kind == StepMessage::Kind::kStop) return absl::OkStatus();
    if (absl::Status s = run_step(step); !s.ok()) return s;
  }
}

}  // namespace moeserve::engine
