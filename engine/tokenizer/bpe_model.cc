#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/io/strict_json.h"
#include "engine/status_macros.h"

namespace moeserve::engine {
namespace {

using io_internal::AsAbsl;
using nlohmann::json;

// tokenizers caches only words shorter than this (models/bpe/model.rs MAX_LENGTH).
constexpr size_t kMaxCachedPieceBytes = 256;
// Vocab ids index dense tables; real vocabularies stay far below this.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

struct ByteLevelTables {
  std::array<std::string, 256> char_of_byte;  // UTF-8 of each byte's character
  std::array<int16_t, 0x144> byte_of_char;    // code point → byte, -1 outside the table

  ByteLevelTables() {
    byte_of_char.fill(-1);
    int next_extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const int code_point = printable ? b : 0x100 + next_extra++;
      byte_of_char[code_point] = static_cast<int16_t>(b);
      std::string& utf8 = char_of_byte[b];
      if (code_point < 0x80) {
        utf8 += static_cast<char>(code_point);
      } else {  // all below U+0800: two bytes
        utf8 += static_cast<char>(0xC0 | (code_point >> 6));
        utf8 += static_cast<char>(0x80 | (code_point & 0x3F));
      }
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* const tables = new ByteLevelTables();
  return *tables;
}

absl::Status Invalid(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(AsAbsl(where), ": ", AsAbsl(what)));
}

// An optional field that is null, absent, or of the type `check` accepts.
template <typename Check>
absl::StatusOr<const json*> OptionalField(const json& object, const char* key, Check check,
                                          const char* type_name, std::string_view where) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  if (!check(*it)) {
    return Invalid(
        where, absl::StrCat("'", key, "' must be ", type_name, " or null, got ", it->type_name()));
  }
  return &*it;
}

}  // namespace

std::string_view ByteLevelChar(uint8_t byte) { return Tables().char_of_byte[byte]; }

std::string ByteLevelEncode(std::string_view bytes) {
  const ByteLevelTables& tables = Tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += tables.char_of_byte[static_cast<uint8_t>(c)];
  return out;
}

std::string ByteLevelDecode(std::string_view token) {
  const ByteLevelTables& tables = Tables();
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    const auto lead = static_cast<uint8_t>(token[i]);
    uint32_t code_point = 0;
    size_t length = 1;
    if (lead < 0x80) {
      code_point = lead;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < token.size()) {
      code_point = ((lead & 0x1Fu) << 6) | (static_cast<uint8_t>(token[i + 1]) & 0x3Fu);
      length = 2;
    } else {
      return std::string(token);  // three- and four-byte characters are never in the table
    }
    if (code_point >= tables.byte_of_char.size() || tables.byte_of_char[code_point] < 0) {
      return std::string(token);
    }
    out += static_cast<char>(tables.byte_of_char[code_point]);
    i += length;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model,
                                                             std::string_view where) {
  if (!model.is_object()) {
    return Invalid(where, absl::StrCat("must be an object, got ", model.type_name()));
  }
  std::unique_ptr<BpeModel> bpe(new BpeModel());

  const auto is_number = [](const json& v) { return v.is_number(); };
  const auto is_string = [](const json& v) { return v.is_string(); };
  const auto is_bool = [](const json& v) { return v.is_boolean(); };
  MOESERVE_ASSIGN_OR_RETURN(const json* dropout,
                            OptionalField(model, "dropout", is_number, "a number", where));
  if (dropout != nullptr && dropout->get<double>() != 0.0) {
    return absl::UnimplementedError(
        absl::StrCat(AsAbsl(where), ": unsupported dropout ", dropout->dump(),
                     " (BPE dropout samples merges at random; only null or 0 is supported)"));
  }
  for (const auto& [key, target] :
       {std::pair<const char*, std::string*>{"continuing_subword_prefix",
                                             &bpe->continuing_subword_prefix_},
        std::pair<const char*, std::string*>{"end_of_word_suffix", &bpe->end_of_word_suffix_}}) {
    MOESERVE_ASSIGN_OR_RETURN(const json* value,
                              OptionalField(model, key, is_string, "a string", where));
    if (value != nullptr) *target = value->get<std::string>();
  }
  for (const auto& [key, target] :
       {std::pair<const char*, bool*>{"fuse_unk", &bpe->fuse_unk_},
        std::pair<const char*, bool*>{"byte_fallback", &bpe->byte_fallback_},
        std::pair<const char*, bool*>{"ignore_merges", &bpe->ignore_merges_}}) {
    MOESERVE_ASSIGN_OR_RETURN(const json* value,
                              OptionalField(model, key, is_bool, "a boolean", where));
    if (value != nullptr) *target = value->get<bool>();
  }
  bpe->plain_symbols_ = bpe->continuing_subword_prefix_.empty() && bpe->end_of_word_suffix_.empty();

  // --- vocab
  const auto vocab = model.find("vocab");
  if (vocab == model.end()) return Invalid(where, "missing field 'vocab'");
  if (!vocab->is_object()) {
    return Invalid(
        where, absl::StrCat("'vocab' must be an object of token → id, got ", vocab->type_name()));
  }
  bpe->vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId) {
      return Invalid(where, absl::StrCat("vocab['", token, "'] must be an integer id in [0, ",
                                         kMaxTokenId, "], got ", id.dump()));
    }
    bpe->vocab_.emplace(token, static_cast<int32_t>(id.get<int64_t>()));
    max_id = std::max(max_id, id.get<int64_t>());
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  bpe->has_id_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : bpe->vocab_) {
    if (bpe->has_id_[id]) {
      const std::string& other = bpe->id_to_token_[id];
      return Invalid(where,
                     absl::StrCat("vocab: id ", id, " is given to both '", std::min(other, token),
                                  "' and '", std::max(other, token), "'"));
    }
    bpe->has_id_[id] = true;
    bpe->id_to_token_[id] = token;
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = bpe->vocab_.find(AsAbsl(ByteLevelChar(static_cast<uint8_t>(b))));
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }

  MOESERVE_ASSIGN_OR_RETURN(const json* unk,
                            OptionalField(model, "unk_token", is_string, "a string", where));
  if (unk != nullptr) {
    const std::string& unk_token = unk->get_ref<const std::string&>();
    const auto it = bpe->vocab_.find(unk_token);
    if (it == bpe->vocab_.end()) {
      return Invalid(where, absl::StrCat("unk_token '", unk_token, "' is not in the vocab"));
    }
    bpe->unk_id_ = it->second;
  }

  // --- merges
  const auto merges = model.find("merges");
  if (merges == model.end()) return Invalid(where, "missing field 'merges'");
  if (!merges->is_array()) {
    return Invalid(where, absl::StrCat("'merges' must be an array, got ", merges->type_name()));
  }
  bpe->merges_.reserve(merges->size());
  const size_t prefix_length = bpe->continuing_subword_prefix_.size();
  uint32_t rank = 0;
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& entry = (*merges)[i];
    const std::string entry_where = absl::StrCat(AsAbsl(where), ": merges[", i, "]");
    std::string left, right;
    if (entry.is_string()) {
      const std::string& line = entry.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;  // a merges.txt header; not ranked
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(entry_where, ": '", line, "' must be two tokens separated by one space"));
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(entry_where, ": must be \"a b\" or [\"a\", \"b\"], got ", entry.dump()));
    }
    const std::string merged =
        left + (right.size() >= prefix_length ? right.substr(prefix_length) : std::string());
    int32_t ids[3] = {};
    const std::string* parts[3] = {&left, &right, &merged};
    for (int part = 0; part < 3; ++part) {
      const auto it = bpe->vocab_.find(*parts[part]);
      if (it == bpe->vocab_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(entry_where, ": ",
                                                       part == 2 ? "merged token '" : "token '",
                                                       *parts[part], "' is not in the vocab"));
      }
      ids[part] = it->second;
    }
    // tokenizers collects (pair → rank) into a map, so a repeated pair keeps its last rank.
    bpe->merges_[PairKey(ids[0], ids[1])] = Merge{rank, ids[2]};
    ++rank;
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  const auto it = vocab_.find(AsAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::Encode(std::string_view piece, std::vector<int32_t>& ids) const {
  if (piece.empty()) return;
  // The result depends on the piece alone, so the cache can answer before the ignore_merges
  // check that tokenizers makes first.
  const bool cacheable = piece.size() < kMaxCachedPieceBytes;
  if (cacheable && cache_.Lookup(piece, ids)) return;
  Ids word;
  if (ignore_merges_) {
    if (const auto it = vocab_.find(ByteLevelEncode(piece)); it != vocab_.end()) {
      word.push_back(it->second);
    }
  }
  if (word.empty()) MergeWord(piece, word);
  ids.insert(ids.end(), word.begin(), word.end());
  if (cacheable) cache_.Insert(piece, word);
}

void BpeModel::MergeWord(std::string_view piece, Ids& word) const {
  // tokenizers' merge_word: a pending unknown run is written out before the next known
  // symbol (or at the end); byte-fallback tokens are written at once, ahead of a pending unk.
  std::optional<int32_t> pending_unk;
  const auto add_known = [&](int32_t id) {
    if (pending_unk.has_value()) {
      word.push_back(*pending_unk);
      pending_unk.reset();
    }
    word.push_back(id);
  };
  const auto add_unknown = [&](std::string_view symbol) {
    if (byte_fallback_) {
      Ids fallback;
      for (char c : symbol) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<uint8_t>(c));
        const auto it = vocab_.find(absl::string_view(name));
        if (it == vocab_.end()) {
          fallback.clear();
          break;
        }
        fallback.push_back(it->second);
      }
      if (!fallback.empty()) {
        word.insert(word.end(), fallback.begin(), fallback.end());
        return;
      }
    }
    if (!unk_id_.has_value()) return;  // no unk_token: the character is dropped
    if (pending_unk.has_value() && !fuse_unk_) word.push_back(*pending_unk);
    pending_unk = *unk_id_;
  };

  if (plain_symbols_) {
    for (char c : piece) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        add_known(id);
      } else {
        add_unknown(ByteLevelChar(static_cast<uint8_t>(c)));
      }
    }
  } else {
    std::string symbol;
    for (size_t i = 0; i < piece.size(); ++i) {
      symbol.clear();
      if (i > 0) symbol += continuing_subword_prefix_;
      symbol += ByteLevelChar(static_cast<uint8_t>(piece[i]));
      if (i + 1 == piece.size()) symbol += end_of_word_suffix_;
      const auto it = vocab_.find(symbol);
      if (it != vocab_.end()) {
        add_known(it->second);
      } else {
        add_unknown(symbol);
      }
    }
  }
  if (pending_unk.has_value()) word.push_back(*pending_unk);
  MergeAll(word);
}

void BpeModel::MergeAll(Ids& word) const {
  // tokenizers' Word::merge_all: a heap of candidate merges ordered by (rank, position); an
  // entry is stale if its left symbol was merged away or its pair no longer yields new_id.
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  const int32_t n = static_cast<int32_t>(word.size());
  if (n < 2) return;
  absl::InlinedVector<Symbol, 32> symbols(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) symbols[i] = {word[i], i - 1, i + 1 < n ? i + 1 : -1, true};

  // std heap functions keep the "largest" on top; make that the lowest (rank, pos).
  const auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  absl::InlinedVector<Candidate, 32> heap;
  for (int32_t i = 0; i + 1 < n; ++i) {
    const auto it = merges_.find(PairKey(symbols[i].id, symbols[i + 1].id));
    if (it != merges_.end()) heap.push_back({it->second.rank, i, it->second.new_id});
  }
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  const auto push = [&](int32_t pos, int32_t left, int32_t right) {
    const auto it = merges_.find(PairKey(left, right));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), lower_priority);
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& current = symbols[top.pos];
    if (!current.alive || current.next == -1) continue;
    const Symbol right = symbols[current.next];
    const auto it = merges_.find(PairKey(current.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;

    symbols[current.next].alive = false;
    current.id = top.new_id;
    current.next = right.next;
    if (right.next != -1) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) push(current.prev, symbols[current.prev].id, current.id);
    if (current.next != -1) push(top.pos, current.id, symbols[current.next].id);
  }

  word.clear();
  for (const Symbol& symbol : symbols) {
    if (symbol.alive) word.push_back(symbol.id);
  }
}

const BpeModel::WordCache::Shard& BpeModel::WordCache::ShardFor(std::string_view piece) const {
  // The top bits pick the shard; the map inside hashes with the low ones.
  const size_t hash = absl::Hash<absl::string_view>{}(AsAbsl(piece));
  return shards_[(hash >> 56) % kNumShards];
}

bool BpeModel::WordCache::Lookup(std::string_view piece, std::vector<int32_t>& ids) const {
  const Shard& shard = ShardFor(piece);
  std::lock_guard lock(shard.mu);
  const auto it = shard.map.find(AsAbsl(piece));
  if (it == shard.map.end()) return false;
  ids.insert(ids.end(), it->second.begin(), it->second.end());
  return true;
}

void BpeModel::WordCache::Insert(std::string_view piece, const Ids& ids) const {
  const Shard& shard = ShardFor(piece);
  std::lock_guard lock(shard.mu);
  if (shard.map.size() >= kMaxEntriesPerShard) shard.map.clear();
  shard.map.emplace(std::string(piece), ids);
}

}  // namespace moeserve::engine
