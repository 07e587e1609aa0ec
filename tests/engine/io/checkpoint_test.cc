// Tests of Checkpoint: the three directory layouts (indexed shards, model.safetensors, a set of
// *.safetensors), index/shard consistency rules, and lookups.
#include "engine/io/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/io/safetensors_writer.h"
#include "nlohmann/json.hpp"
#include "tests/engine/io/io_test_util.h"

namespace moeserve::engine {
namespace {

using ::moeserve::engine::testing::RandomBytes;
using ::moeserve::engine::testing::ReadBytes;
using ::moeserve::engine::testing::ScopedTempDir;
using ::moeserve::engine::testing::ToVector;
using ::moeserve::engine::testing::WriteBytes;
using ::moeserve::engine::testing::WriteRawSafetensors;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Writes a shard holding `names`, each a BF16 [2,3] tensor with bytes derived from its name.
std::vector<uint8_t> BytesFor(const std::string& name) {
  return RandomBytes(12, static_cast<uint32_t>(std::hash<std::string>{}(name)));
}

void WriteShard(const std::string& path, const std::vector<std::string>& names) {
  std::vector<std::vector<uint8_t>> storage;
  storage.reserve(names.size());
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : names) {
    storage.push_back(BytesFor(name));
    tensors.push_back({name, DType::kBF16, {2, 3}, storage.back()});
  }
  const absl::Status s = WriteSafetensors(path, tensors);
  ASSERT_TRUE(s.ok()) << s;
}

void ExpectOpenFails(const std::string& dir, absl::StatusCode code,
                     const std::vector<std::string>& substrings) {
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir);
  ASSERT_FALSE(ckpt.ok()) << dir;
  EXPECT_EQ(ckpt.status().code(), code) << ckpt.status();
  for (const std::string& s : substrings) EXPECT_THAT(ckpt.status().message(), HasSubstr(s));
}

constexpr char kShard1[] = "model-00001-of-00002.safetensors";
constexpr char kShard2[] = "model-00002-of-00002.safetensors";

// Two shards and an index mapping a, b -> shard 1 and c -> shard 2.
void WriteShardedCheckpoint(const ScopedTempDir& dir) {
  WriteShard(dir.File(kShard1), {"model.layers.0.b", "model.layers.0.a"});
  WriteShard(dir.File(kShard2), {"lm_head.weight"});
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(),
                                    {{"model.layers.0.a", kShard1},
                                     {"model.layers.0.b", kShard1},
                                     {"lm_head.weight", kShard2}},
                                    36)
                  .ok());
}

TEST(CheckpointTest, Open_ShardedWithIndex_RoundTripsEveryTensor) {
  ScopedTempDir dir;
  WriteShardedCheckpoint(dir);
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ(ckpt->dir(), dir.path());
  EXPECT_THAT(ckpt->TensorNames(),
              ElementsAre("lm_head.weight", "model.layers.0.a", "model.layers.0.b"));
  EXPECT_EQ(ckpt->num_tensors(), 3u);
  EXPECT_EQ(ckpt->files().size(), 2u);
  for (const std::string& name : ckpt->TensorNames()) {
    SCOPED_TRACE(name);
    absl::StatusOr<TensorView> view = ckpt->Get(name);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->info->name, name);
    EXPECT_EQ(view->info->dtype, DType::kBF16);
    EXPECT_EQ(view->info->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(ToVector(view->bytes), BytesFor(name));
    EXPECT_TRUE(ckpt->Contains(name));
  }
  EXPECT_EQ(ckpt->Get("lm_head.weight")->file->path(), dir.File(kShard2));
  EXPECT_EQ(ckpt->Get("model.layers.0.a")->file->path(), dir.File(kShard1));
}

TEST(CheckpointTest, WriteSafetensorsIndex_WritesHfLayout) {
  ScopedTempDir dir;
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"x", kShard1}}, 1234).ok());
  const std::vector<uint8_t> raw = ReadBytes(dir.File("model.safetensors.index.json"));
  const nlohmann::json index = nlohmann::json::parse(std::string(raw.begin(), raw.end()));
  EXPECT_EQ(index["metadata"]["total_size"], 1234);
  EXPECT_EQ(index["weight_map"], (nlohmann::json{{"x", kShard1}}));
  EXPECT_FALSE(std::filesystem::exists(dir.File("model.safetensors.index.json.tmp")));
}

TEST(CheckpointTest, Open_IsMovableAndViewsSurviveTheMove) {
  ScopedTempDir dir;
  WriteShardedCheckpoint(dir);
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<TensorView> before = ckpt->Get("model.layers.0.a");
  ASSERT_TRUE(before.ok());
  Checkpoint moved = *std::move(ckpt);
  absl::StatusOr<TensorView> after = moved.Get("model.layers.0.a");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(before->bytes.data(), after->bytes.data());
  EXPECT_EQ(ToVector(before->bytes), BytesFor("model.layers.0.a"));
}

TEST(CheckpointTest, Open_KeepsTensorsTheIndexDoesNotMention) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a", "extra"});
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"a", kShard1}}, 12).ok());
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT(ckpt->TensorNames(), ElementsAre("a", "extra"));
}

TEST(CheckpointTest, Open_SingleModelSafetensorsWinsOverOtherFiles) {
  ScopedTempDir dir;
  WriteShard(dir.File("model.safetensors"), {"w"});
  WriteShard(dir.File("other.safetensors"), {"w", "v"});  // would clash if globbed
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT(ckpt->TensorNames(), ElementsAre("w"));
  EXPECT_EQ(ckpt->Get("w")->file->path(), dir.File("model.safetensors"));
}

TEST(CheckpointTest, Open_WithoutIndexUsesAllSafetensorsSorted) {
  ScopedTempDir dir;
  WriteShard(dir.File("b.safetensors"), {"y"});
  WriteShard(dir.File("a.safetensors"), {"x"});
  WriteBytes(dir.File("notes.txt"), {1, 2, 3});
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_THAT(ckpt->TensorNames(), ElementsAre("x", "y"));
  ASSERT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->files()[0]->path(), dir.File("a.safetensors"));
  EXPECT_EQ(ckpt->files()[1]->path(), dir.File("b.safetensors"));
}

TEST(CheckpointTest, Open_WithoutIndexRejectsTensorInTwoFiles) {
  ScopedTempDir dir;
  WriteShard(dir.File("a.safetensors"), {"x", "dup"});
  WriteShard(dir.File("b.safetensors"), {"dup"});
  ExpectOpenFails(dir.path(), absl::StatusCode::kDataLoss,
                  {"'dup'", dir.File("a.safetensors"), dir.File("b.safetensors")});
}

TEST(CheckpointTest, Open_EmptyDirectoryIsNotFound) {
  ScopedTempDir dir;
  WriteBytes(dir.File("config.json"), {'{', '}'});
  ExpectOpenFails(dir.path(), absl::StatusCode::kNotFound, {dir.path()});
}

TEST(CheckpointTest, Open_MissingDirectoryIsNotFound) {
  ScopedTempDir dir;
  ExpectOpenFails(dir.File("nope"), absl::StatusCode::kNotFound, {dir.File("nope")});
}

TEST(CheckpointTest, Open_RejectsIndexNamingMissingShard) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a"});
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"a", kShard1}, {"b", kShard2}}, 24).ok());
  ExpectOpenFails(dir.path(), absl::StatusCode::kNotFound,
                  {"model.safetensors.index.json", kShard2});
}

TEST(CheckpointTest, Open_RejectsIndexTensorAbsentFromItsShard) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a"});
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"a", kShard1}, {"ghost", kShard1}}, 24).ok());
  ExpectOpenFails(dir.path(), absl::StatusCode::kDataLoss,
                  {"'ghost'", kShard1, "model.safetensors.index.json"});
}

TEST(CheckpointTest, Open_RejectsTensorIndexMapsToAnotherShard) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a"});
  WriteShard(dir.File(kShard2), {"b"});
  // The index says "b" lives in shard 1, but shard 2 holds it.
  ASSERT_TRUE(
      WriteSafetensorsIndex(dir.path(), {{"a", kShard1}, {"b", kShard1}, {"c", kShard2}}, 24).ok());
  WriteShard(dir.File(kShard2), {"b", "c"});
  ExpectOpenFails(dir.path(), absl::StatusCode::kDataLoss,
                  {"'b'", dir.File(kShard1), dir.File(kShard2)});
}

TEST(CheckpointTest, Open_RejectsTensorInTwoShards) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a", "twice"});
  WriteShard(dir.File(kShard2), {"b", "twice"});
  ASSERT_TRUE(
      WriteSafetensorsIndex(dir.path(), {{"a", kShard1}, {"b", kShard2}, {"twice", kShard1}}, 48)
          .ok());
  ExpectOpenFails(dir.path(), absl::StatusCode::kDataLoss,
                  {"'twice'", dir.File(kShard1), dir.File(kShard2)});
}

TEST(CheckpointTest, Open_RejectsMalformedIndex) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a"});
  const std::string index = dir.File("model.safetensors.index.json");
  for (const std::string text : {
           R"({"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}})",  // duplicate key
           R"({"metadata": {"total_size": 12}})",                              // no weight_map
           R"({"weight_map": {"a": 3}})",                                      // shard not a string
           R"({"weight_map": {"a": "../outside.safetensors"}})",               // escapes the dir
           R"({"weight_map": {}})",                                            // names nothing
           R"(not json)",
       }) {
    SCOPED_TRACE(text);
    WriteBytes(index, std::vector<uint8_t>(text.begin(), text.end()));
    ExpectOpenFails(dir.path(), absl::StatusCode::kInvalidArgument, {index});
  }
}

TEST(CheckpointTest, Open_PropagatesCorruptShardErrorNamingTheShard) {
  ScopedTempDir dir;
  WriteShard(dir.File(kShard1), {"a"});
  WriteRawSafetensors(dir.File(kShard2),
                      R"({"b":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})",
                      RandomBytes(4, 1));
  ASSERT_TRUE(WriteSafetensorsIndex(dir.path(), {{"a", kShard1}, {"b", kShard2}}, 16).ok());
  ExpectOpenFails(dir.path(), absl::StatusCode::kInvalidArgument, {dir.File(kShard2), "'b'"});
}

TEST(CheckpointTest, Get_MissingTensorIsNotFound) {
  ScopedTempDir dir;
  WriteShardedCheckpoint(dir);
  absl::StatusOr<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  absl::StatusOr<TensorView> view = ckpt->Get("model.layers.9.absent");
  ASSERT_FALSE(view.ok());
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(view.status().message(),
            absl::StrCat("tensor 'model.layers.9.absent' not found in checkpoint ", dir.path()));
  EXPECT_FALSE(ckpt->Contains("model.layers.9.absent"));
}

}  // namespace
}  // namespace moeserve::engine
