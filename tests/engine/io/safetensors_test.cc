// Tests of the safetensors reader and writer: writer -> reader round trips on real files, and the
// reader's rejection of each kind of malformed file (crafted as raw bytes).
#include "engine/io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/io/safetensors_writer.h"
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

// Opens `path` and expects failure with `code` and a message naming the file and `tensor`.
void ExpectOpenFails(const std::string& path, absl::StatusCode code, std::string_view tensor = "",
                     std::string_view detail = "") {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok()) << path;
  EXPECT_EQ(file.status().code(), code) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr(path));
  if (!tensor.empty()) {
    EXPECT_THAT(file.status().message(), HasSubstr("'" + std::string(tensor) + "'"));
  }
  if (!detail.empty()) {
    EXPECT_THAT(file.status().message(), HasSubstr(std::string(detail)));
  }
}

struct Fixture {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<Fixture> MixedFixtures() {
  std::vector<Fixture> f = {
      {"model.layers.0.mlp.gate.e_score_correction_bias", DType::kF32, {3, 4}, {}},
      {"model.norm.weight", DType::kBF16, {5}, {}},
      {"model.layers.0.self_attn.q_a_proj.weight", DType::kF8E4M3, {2, 3, 7}, {}},
      {"positions", DType::kI64, {4}, {}},
      {"empty", DType::kF32, {0, 3}, {}},
      {"scalar", DType::kF64, {}, {}},
  };
  uint32_t seed = 1;
  for (Fixture& x : f) {
    int64_t numel = 1;
    for (int64_t d : x.shape) numel *= d;
    x.bytes = RandomBytes(static_cast<size_t>(numel * DTypeSize(x.dtype)), seed++);
  }
  return f;
}

std::vector<TensorToWrite> ToWrite(const std::vector<Fixture>& fixtures) {
  std::vector<TensorToWrite> out;
  for (const Fixture& x : fixtures) out.push_back({x.name, x.dtype, x.shape, x.bytes});
  return out;
}

TEST(SafetensorsTest, RoundTrip_PreservesBytesShapesDtypesAndMetadata) {
  ScopedTempDir dir;
  const std::string path = dir.File("model.safetensors");
  const std::vector<Fixture> fixtures = MixedFixtures();
  ASSERT_TRUE(WriteSafetensors(path, ToWrite(fixtures), {{"producer", "test"}}).ok());

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  EXPECT_EQ((*file)->tensors().size(), fixtures.size());
  EXPECT_EQ((*file)->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"producer", "test"}}));
  for (const Fixture& x : fixtures) {
    SCOPED_TRACE(x.name);
    const TensorInfo* info = (*file)->Find(x.name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->name, x.name);
    EXPECT_EQ(info->dtype, x.dtype);
    EXPECT_EQ(info->shape, x.shape);
    EXPECT_EQ(info->num_bytes(), x.bytes.size());
    EXPECT_EQ(info->num_elements() * DTypeSize(x.dtype), static_cast<int64_t>(x.bytes.size()));
    EXPECT_EQ(ToVector((*file)->Data(*info)), x.bytes);
  }
  EXPECT_EQ((*file)->Find("scalar")->num_elements(), 1);
  EXPECT_EQ((*file)->Find("empty")->num_elements(), 0);
  // Packed: the data buffer is exactly the sum of the tensors.
  size_t total = 0;
  for (const Fixture& x : fixtures) total += x.bytes.size();
  EXPECT_EQ((*file)->data_size(), total);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// DropPages releases a tensor's pages, not its bytes: every tensor, its neighbours included,
// still reads back exactly (tensors of several pages, and ones sharing pages with others).
TEST(SafetensorsTest, DropPages_KeepsEveryTensorReadable) {
  ScopedTempDir dir;
  const std::string path = dir.File("model.safetensors");
  std::vector<Fixture> fixtures = MixedFixtures();
  fixtures.push_back({"big.a", DType::kBF16, {3, 5000}, RandomBytes(30000, 91)});
  fixtures.push_back({"big.b", DType::kF32, {4099}, RandomBytes(4 * 4099, 92)});
  fixtures.push_back({"small.c", DType::kU8, {13}, RandomBytes(13, 93)});
  ASSERT_TRUE(WriteSafetensors(path, ToWrite(fixtures)).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  for (int round = 0; round < 2; ++round) {
    for (const Fixture& x : fixtures) {
      SCOPED_TRACE(x.name);
      const TensorInfo* info = (*file)->Find(x.name);
      ASSERT_NE(info, nullptr);
      EXPECT_EQ(ToVector((*file)->Data(*info)), x.bytes);
      (*file)->DropPages(*info);
    }
  }
  TensorInfo outside = *(*file)->Find("big.a");
  outside.data_end = (*file)->data_size() + 4096;  // not this file's: ignored, no crash
  (*file)->DropPages(outside);
}

TEST(SafetensorsTest, Write_LaysOutDataInGivenOrderAndReaderSortsByOffset) {
  ScopedTempDir dir;
  const std::string path = dir.File("x.safetensors");
  const std::vector<uint8_t> a = RandomBytes(8, 1), b = RandomBytes(4, 2), c = RandomBytes(12, 3);
  ASSERT_TRUE(WriteSafetensors(path, {{"zeta", DType::kF32, {2}, a},
                                      {"alpha", DType::kU8, {4}, b},
                                      {"mid", DType::kI32, {3}, c}})
                  .ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> order;
  for (const TensorInfo& t : (*file)->tensors()) order.push_back(t.name);
  EXPECT_THAT(order, ElementsAre("zeta", "alpha", "mid"));
  EXPECT_EQ((*file)->Find("alpha")->data_begin, 8u);
  EXPECT_EQ((*file)->Find("mid")->data_end, 24u);
}

TEST(SafetensorsTest, Write_PadsHeaderWithSpacesToMultipleOf8) {
  ScopedTempDir dir;
  // Names of every length mod 8 exercise every padding amount.
  for (int len = 1; len <= 8; ++len) {
    const std::string path = dir.File("pad" + std::to_string(len) + ".safetensors");
    const std::vector<uint8_t> bytes = RandomBytes(2, len);
    ASSERT_TRUE(WriteSafetensors(path, {{std::string(len, 'w'), DType::kBF16, {1}, bytes}}).ok());
    const std::vector<uint8_t> raw = ReadBytes(path);
    ASSERT_GE(raw.size(), 8u);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | raw[i];
    EXPECT_EQ(n % 8, 0u) << len;
    ASSERT_EQ(raw.size(), 8 + n + 2);
    const std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<int64_t>(n));
    const size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
    EXPECT_LT(header.size() - last - 1, 8u);  // at most 7 spaces of padding
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ((*file)->data_offset() % 8, 0u);
  }
}

TEST(SafetensorsTest, Write_RejectsWrongByteCount) {
  ScopedTempDir dir;
  const std::string path = dir.File("bad.safetensors");
  const std::vector<uint8_t> bytes(10);
  const absl::Status s = WriteSafetensors(path, {{"w", DType::kF32, {3}, bytes}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'w'"));
  EXPECT_THAT(s.message(), HasSubstr("10"));
  EXPECT_THAT(s.message(), HasSubstr("12"));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(SafetensorsTest, Write_RejectsDuplicateNegativeAndReservedNames) {
  ScopedTempDir dir;
  const std::string path = dir.File("bad.safetensors");
  const std::vector<uint8_t> bytes(4);
  absl::Status s =
      WriteSafetensors(path, {{"w", DType::kF32, {1}, bytes}, {"w", DType::kF32, {1}, bytes}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'w'"));
  s = WriteSafetensors(path, {{"neg", DType::kU8, {-4}, bytes}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'neg'"));
  s = WriteSafetensors(path, {{"__metadata__", DType::kU8, {4}, bytes}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsTest, Write_ReplacesExistingFile) {
  ScopedTempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteBytes(path, {1, 2, 3});
  const std::vector<uint8_t> bytes = RandomBytes(4, 7);
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kU8, {4}, bytes}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(ToVector((*file)->Data(*(*file)->Find("w"))), bytes);
}

TEST(SafetensorsTest, Open_ToleratesGapsTrailingBytesAndEmptyTensorsInsideRanges) {
  ScopedTempDir dir;
  const std::string path = dir.File("gaps.safetensors");
  const std::vector<uint8_t> data = RandomBytes(16, 5);
  // a: [0,4), gap [4,8), b: [8,10); empty tensor at 2 (inside a); 6 trailing bytes.
  WriteRawSafetensors(path,
                      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[8,10]},)"
                      R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                      R"("e":{"dtype":"BF16","shape":[3,0],"data_offsets":[2,2]}})",
                      data);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> order;
  for (const TensorInfo& t : (*file)->tensors()) order.push_back(t.name);
  EXPECT_THAT(order, ElementsAre("a", "e", "b"));
  EXPECT_TRUE((*file)->metadata().empty());
  EXPECT_EQ(ToVector((*file)->Data(*(*file)->Find("b"))),
            std::vector<uint8_t>(data.begin() + 8, data.begin() + 10));
  EXPECT_TRUE((*file)->Data(*(*file)->Find("e")).empty());
}

TEST(SafetensorsTest, Open_AcceptsEmptyHeaderObject) {
  ScopedTempDir dir;
  const std::string path = dir.File("empty.safetensors");
  WriteRawSafetensors(path, "{}      ");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->tensors().empty());
}

TEST(SafetensorsTest, Find_ReturnsNullptrForAbsentName) {
  ScopedTempDir dir;
  const std::string path = dir.File("x.safetensors");
  const std::vector<uint8_t> bytes(4);
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kU8, {4}, bytes}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Find("v"), nullptr);
  EXPECT_EQ((*file)->Find("__metadata__"), nullptr);
}

TEST(SafetensorsTest, Data_ReturnsEmptySpanForInfoOutsideThisFile) {
  ScopedTempDir dir;
  const std::string path = dir.File("x.safetensors");
  const std::vector<uint8_t> bytes(4);
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kU8, {4}, bytes}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  TensorInfo foreign{"other", DType::kU8, {100}, 0, 100};
  EXPECT_TRUE((*file)->Data(foreign).empty());
}

TEST(SafetensorsTest, MoveConstruction_KeepsMappingValid) {
  ScopedTempDir dir;
  const std::string path = dir.File("x.safetensors");
  const std::vector<uint8_t> bytes = RandomBytes(6, 9);
  ASSERT_TRUE(WriteSafetensors(path, {{"w", DType::kI16, {3}, bytes}}).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  SafetensorsFile moved(std::move(**file));
  file->reset();
  EXPECT_EQ(ToVector(moved.Data(*moved.Find("w"))), bytes);
}

// --- Malformed files. Each names the file and, where there is one, the tensor.

TEST(SafetensorsTest, Open_MissingFileIsNotFound) {
  ScopedTempDir dir;
  ExpectOpenFails(dir.File("absent.safetensors"), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, Open_RejectsFileShorterThan8Bytes) {
  ScopedTempDir dir;
  const std::string path = dir.File("short.safetensors");
  WriteBytes(path, {2, 0, 0});
  ExpectOpenFails(path, absl::StatusCode::kDataLoss, "", "8-byte");
}

TEST(SafetensorsTest, Open_RejectsTruncatedData) {
  ScopedTempDir dir;
  const std::string path = dir.File("cut.safetensors");
  const std::vector<uint8_t> a = RandomBytes(16, 1), b = RandomBytes(16, 2);
  ASSERT_TRUE(
      WriteSafetensors(path, {{"first", DType::kF32, {4}, a}, {"last", DType::kF32, {4}, b}}).ok());
  std::vector<uint8_t> raw = ReadBytes(path);
  raw.resize(raw.size() - 3);  // cut into the last tensor
  WriteBytes(path, raw);
  ExpectOpenFails(path, absl::StatusCode::kDataLoss, "last", "past the end");
}

TEST(SafetensorsTest, Open_RejectsHeaderLengthPastEndOfFile) {
  ScopedTempDir dir;
  const std::string path = dir.File("long.safetensors");
  WriteRawSafetensors(path, "{}", {}, /*length=*/64);
  ExpectOpenFails(path, absl::StatusCode::kDataLoss, "", "64");
}

TEST(SafetensorsTest, Open_RejectsHugeHeaderLength) {
  ScopedTempDir dir;
  const std::string path = dir.File("huge.safetensors");
  WriteRawSafetensors(path, "{}", {}, /*length=*/100'000'001);
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "100000001");
  WriteRawSafetensors(path, "{}", {}, /*length=*/~uint64_t{0});  // would overflow 8 + N
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, Open_RejectsNonJsonHeader) {
  ScopedTempDir dir;
  const std::string path = dir.File("text.safetensors");
  WriteRawSafetensors(path, "this is not json");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "invalid JSON");
}

TEST(SafetensorsTest, Open_RejectsJsonWithComments) {
  ScopedTempDir dir;
  const std::string path = dir.File("comment.safetensors");
  WriteRawSafetensors(path, "{} // trailing comment");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "invalid JSON");
}

TEST(SafetensorsTest, Open_RejectsInvalidUtf8InHeader) {
  ScopedTempDir dir;
  const std::string path = dir.File("utf8.safetensors");
  WriteRawSafetensors(path, "{\"w\xff\": {}}");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "invalid JSON");
}

TEST(SafetensorsTest, Open_RejectsJsonArrayHeader) {
  ScopedTempDir dir;
  const std::string path = dir.File("array.safetensors");
  WriteRawSafetensors(path, R"([{"dtype":"F32","shape":[1],"data_offsets":[0,4]}])",
                      RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "must be a JSON object");
}

TEST(SafetensorsTest, Open_RejectsUnknownDtype) {
  ScopedTempDir dir;
  const std::string path = dir.File("dtype.safetensors");
  WriteRawSafetensors(path, R"({"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})",
                      RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "F12");
}

TEST(SafetensorsTest, Open_RejectsNegativeShape) {
  ScopedTempDir dir;
  const std::string path = dir.File("neg.safetensors");
  WriteRawSafetensors(path, R"({"w":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})",
                      RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "-4");
}

TEST(SafetensorsTest, Open_RejectsNonIntegerAndOutOfRangeShapeEntries) {
  ScopedTempDir dir;
  const std::string path = dir.File("shape.safetensors");
  for (const char* shape : {"[1.5]", "[\"4\"]", "[9223372036854775808]", "[1e30]", "4"}) {
    SCOPED_TRACE(shape);
    WriteRawSafetensors(
        path, absl::StrCat(R"({"w":{"dtype":"U8","shape":)", shape, R"(,"data_offsets":[0,4]}})"),
        RandomBytes(4, 1));
    ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w");
  }
}

TEST(SafetensorsTest, Open_RejectsShapeWhoseSizeOverflows) {
  ScopedTempDir dir;
  const std::string path = dir.File("overflow.safetensors");
  // 2^32 * 2^32 elements overflow int64; 2^62 F32 elements overflow the byte count.
  for (const char* shape : {"[4294967296,4294967296]", "[4611686018427387904]"}) {
    SCOPED_TRACE(shape);
    WriteRawSafetensors(
        path, absl::StrCat(R"({"w":{"dtype":"F32","shape":)", shape, R"(,"data_offsets":[0,4]}})"),
        RandomBytes(4, 1));
    ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "too many elements");
  }
}

TEST(SafetensorsTest, Open_RejectsByteSizeThatDisagreesWithShape) {
  ScopedTempDir dir;
  const std::string path = dir.File("size.safetensors");
  WriteRawSafetensors(path, R"({"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,10]}})",
                      RandomBytes(16, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "10 bytes");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "needs 12 bytes");
}

TEST(SafetensorsTest, Open_RejectsOverlappingRanges) {
  ScopedTempDir dir;
  const std::string path = dir.File("overlap.safetensors");
  WriteRawSafetensors(path,
                      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      RandomBytes(12, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "b", "overlap tensor 'a'");
}

TEST(SafetensorsTest, Open_RejectsRangePastEndOfData) {
  ScopedTempDir dir;
  const std::string path = dir.File("past.safetensors");
  WriteRawSafetensors(path,
                      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("far":{"dtype":"U8","shape":[4],"data_offsets":[1000,1004]}})",
                      RandomBytes(8, 1));
  ExpectOpenFails(path, absl::StatusCode::kDataLoss, "far", "past the end");
}

TEST(SafetensorsTest, Open_RejectsBeginAfterEnd) {
  ScopedTempDir dir;
  const std::string path = dir.File("reversed.safetensors");
  WriteRawSafetensors(path, R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})",
                      RandomBytes(8, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "begin > end");
}

TEST(SafetensorsTest, Open_RejectsMalformedDataOffsets) {
  ScopedTempDir dir;
  const std::string path = dir.File("offsets.safetensors");
  for (const char* offsets :
       {"[0]", "[0,4,8]", "[-1,3]", "[0.0,4]", "{}", "[0,18446744073709551616]"}) {
    SCOPED_TRACE(offsets);
    WriteRawSafetensors(
        path, absl::StrCat(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":)", offsets, "}}"),
        RandomBytes(8, 1));
    ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "data_offsets");
  }
}

TEST(SafetensorsTest, Open_RejectsDuplicateTensorNames) {
  ScopedTempDir dir;
  const std::string path = dir.File("dup.safetensors");
  // The DOM would keep only the second entry; the reader must notice the first.
  WriteRawSafetensors(path,
                      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                      R"("w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                      RandomBytes(8, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "duplicate");
}

TEST(SafetensorsTest, Open_RejectsDuplicateKeyInsideEntry) {
  ScopedTempDir dir;
  const std::string path = dir.File("dupkey.safetensors");
  WriteRawSafetensors(path,
                      R"({"w":{"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]}})",
                      RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "duplicate key 'dtype'");
}

TEST(SafetensorsTest, Open_RejectsMissingKey) {
  ScopedTempDir dir;
  const std::string path = dir.File("missing.safetensors");
  WriteRawSafetensors(path, R"({"w":{"dtype":"U8","data_offsets":[0,4]}})", RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "missing key 'shape'");
}

TEST(SafetensorsTest, Open_RejectsUnexpectedKeyAndNonObjectEntry) {
  ScopedTempDir dir;
  const std::string path = dir.File("extra.safetensors");
  WriteRawSafetensors(path,
                      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"offsets":[0,4]}})",
                      RandomBytes(4, 1));
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "unexpected key 'offsets'");
  WriteRawSafetensors(path, R"({"w":[1,2]})");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "w", "must be an object");
}

TEST(SafetensorsTest, Open_RejectsNonStringMetadata) {
  ScopedTempDir dir;
  const std::string path = dir.File("meta.safetensors");
  WriteRawSafetensors(path, R"({"__metadata__":{"format":"pt","step":3}})");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "step", "__metadata__");
  WriteRawSafetensors(path, R"({"__metadata__":["pt"]})");
  ExpectOpenFails(path, absl::StatusCode::kInvalidArgument, "", "__metadata__");
}

// The parser takes untrusted bytes: random single-byte edits of a valid header must yield either
// an error or a header whose ranges all lie inside the buffer without overlapping.
TEST(SafetensorsTest, Parse_MutatedHeadersFailCleanlyOrSatisfyInvariants) {
  const std::string valid =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},)"
      R"("c":{"dtype":"I64","shape":[0],"data_offsets":[22,22]}})";
  ASSERT_TRUE(ParseSafetensorsHeader(valid, 22, "f").ok());
  const std::string alphabet = "{}[]\",:-0123456789e.FUIB_ \xff";
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    std::string text = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0:
          text[pos] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          text.erase(pos, 1);
          break;
        default:
          text.insert(pos, 1, alphabet[rng() % alphabet.size()]);
          break;
      }
      if (text.empty()) text = "{";
    }
    const uint64_t data_size = rng() % 32;
    absl::StatusOr<SafetensorsHeader> header = ParseSafetensorsHeader(text, data_size, "fuzz.st");
    if (!header.ok()) {
      EXPECT_THAT(header.status().message(), HasSubstr("fuzz.st")) << text;
      continue;
    }
    ++accepted;
    uint64_t prev_end = 0;
    for (const TensorInfo& t : header->tensors) {
      ASSERT_LE(t.data_begin, t.data_end) << text;
      ASSERT_LE(t.data_end, data_size) << text;
      ASSERT_EQ(t.num_bytes(), static_cast<uint64_t>(t.num_elements()) * DTypeSize(t.dtype));
      if (t.num_bytes() == 0) continue;
      ASSERT_GE(t.data_begin, prev_end) << text;
      prev_end = t.data_end;
    }
  }
  EXPECT_GT(accepted, 0);  // some edits (e.g. inside names) keep the header valid
}

}  // namespace
}  // namespace moeserve::engine
