// The byte-level BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}).
//
// Tokenizer (tokenizer.h) hands each pre-tokenized piece to Encode. A piece's bytes map to
// GPT-2's printable byte alphabet (ByteLevel), each mapped character is an initial symbol, and
// merges apply lowest rank first, leftmost first among equal ranks — tokenizers' Word::merge_all
// with its (rank, position) heap, on ids: the rank table is keyed by the pair of symbol ids.
// Also as in tokenizers: `ignore_merges` returns a piece that is itself in the vocab as one
// token; characters missing from the vocab become `<0xNN>` tokens with `byte_fallback`, else
// `unk_token` (fused with `fuse_unk`), else are dropped; `continuing_subword_prefix` and
// `end_of_word_suffix` decorate the initial symbols. Merges are "a b" strings or ["a", "b"]
// pairs; a merge listed twice keeps its last rank (tokenizers collects them into a map).
//
// Thread-safety: the vocab and merges are constant after FromJson. Encode memoizes piece → ids
// in a sharded cache, each shard under its own mutex, so concurrent Encode calls are safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moeserve::engine {

// GPT-2's byte ↔ character table (tokenizers' bytes_char): printable Latin-1 bytes map to
// themselves, the other 68 to U+0100 onwards. Returns the character of `byte` as UTF-8.
std::string_view ByteLevelChar(uint8_t byte);
// The mapped form of raw bytes: the vocab spelling of a piece ("Ġhello" for " hello").
std::string ByteLevelEncode(std::string_view bytes);
// tokenizers' ByteLevel decoder on one token: the bytes its characters stand for, or the token
// unchanged if any character is outside the table (decode_chain does this per token).
std::string ByteLevelDecode(std::string_view token);

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object; `where` labels errors ("dir/tokenizer.json:
  // model"). InvalidArgument names the field: missing or malformed vocab/merges, a merge whose
  // parts or result are not in the vocab, an unk_token outside the vocab, ids out of range.
  // Unimplemented for a dropout other than 0 (sampling would make encodings random).
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                            std::string_view where);

  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized piece (raw UTF-8, not yet byte-mapped).
  void Encode(std::string_view piece, std::vector<int32_t>& ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocab string of `id` (ByteLevel-mapped), or nullptr if no vocab entry has that id.
  const std::string* IdToToken(int32_t id) const;
  // Number of vocab entries (tokenizers' get_vocab_size; added tokens without a vocab entry
  // are numbered from here).
  int64_t num_entries() const { return static_cast<int64_t>(vocab_.size()); }
  // Largest id in the vocab + 1 (0 for an empty vocab).
  int64_t id_limit() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  using Ids = absl::InlinedVector<int32_t, 6>;

  // Piece → ids, sharded so threads encoding at once rarely share a lock. A full shard is
  // cleared (the working set of a stream of text is far smaller than the capacity).
  class WordCache {
   public:
    bool Lookup(std::string_view piece, std::vector<int32_t>& ids) const;
    void Insert(std::string_view piece, const Ids& ids) const;

   private:
    static constexpr size_t kNumShards = 16;
    static constexpr size_t kMaxEntriesPerShard = 8192;
    struct Shard {
      mutable std::mutex mu;  // std::mutex: TSan sees it (Debian builds absl::Mutex without)
      mutable absl::flat_hash_map<std::string, Ids> map ABSL_GUARDED_BY(mu);
    };
    const Shard& ShardFor(std::string_view piece) const;
    std::array<Shard, kNumShards> shards_;
  };

  BpeModel() = default;
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  // tokenizers' merge_word: initial symbols (with unk/byte-fallback handling), then MergeAll.
  void MergeWord(std::string_view piece, Ids& ids) const;
  void MergeAll(Ids& symbols) const;

  // Constant after FromJson.
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;  // "" where no entry has the id (see has_id_)
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // PairKey(left, right) → rank, merged id
  std::array<int32_t, 256> byte_ids_{};          // id of each byte's character, -1 if absent
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // Whether every initial symbol is byte_ids_[byte] (no prefix/suffix decoration).
  bool plain_symbols_ = true;

  WordCache cache_;
};

}  // namespace moeserve::engine
