// JSON in (nlohmann::ordered_json → values, key order kept) and out (Python's json.dumps, as
// transformers' tojson filter calls it).
#include "engine/chat/jinja/json_value.h"

#include "gtest/gtest.h"

namespace moeserve::engine::jinja {
namespace {

std::string Dump(const nlohmann::ordered_json& json, const JsonDumpOptions& options = {}) {
  absl::StatusOr<Value> value = ValueFromJson(json);
  EXPECT_TRUE(value.ok()) << value.status();
  absl::StatusOr<std::string> text = PythonJsonDumps(*value, options);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "<error>";
}

TEST(JinjaJsonValueTest, Dumps_KeepsKeyOrderAndPythonSeparators) {
  EXPECT_EQ(Dump(nlohmann::ordered_json::parse(R"({"z": 1, "a": [true, null, "x"]})")),
            R"({"z": 1, "a": [true, null, "x"]})");
}

TEST(JinjaJsonValueTest, Dumps_FloatsAsPythonRepr) {
  EXPECT_EQ(Dump(nlohmann::ordered_json::parse("[1.0, 0.1, 1e20, 1.5e-7, 123456789.125]")),
            "[1.0, 0.1, 1e+20, 1.5e-07, 123456789.125]");
}

TEST(JinjaJsonValueTest, Dumps_StringsRawUtf8OrAsciiEscapes) {
  const nlohmann::ordered_json text = "é\"\\\n\x01🙂";
  EXPECT_EQ(Dump(text), "\"é\\\"\\\\\\n\\u0001🙂\"");
  JsonDumpOptions ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(Dump(text, ascii), "\"\\u00e9\\\"\\\\\\n\\u0001\\ud83d\\ude42\"");
}

TEST(JinjaJsonValueTest, Dumps_IndentAndSeparators) {
  JsonDumpOptions options;
  options.indent = "  ";
  EXPECT_EQ(Dump(nlohmann::ordered_json::parse(R"({"a": [1], "b": {}})"), options),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  options = {};
  options.separators = {{",", ":"}};
  EXPECT_EQ(Dump(nlohmann::ordered_json::parse(R"({"a": [1, 2]})"), options), R"({"a":[1,2]})");
}

TEST(JinjaJsonValueTest, Dumps_RefusesWhatPythonCannotSerialize) {
  EXPECT_FALSE(PythonJsonDumps(Value::Undefined("x"), {}).ok());
  EXPECT_FALSE(PythonJsonDumps(Value::List({}, SequenceKind::kGenerator), {}).ok());
}

TEST(JinjaJsonValueTest, FromJson_RefusesHostileNesting) {
  nlohmann::ordered_json deep = 1;
  for (int i = 0; i < kMaxJsonInputDepth + 5; ++i) deep = nlohmann::ordered_json::array({deep});
  EXPECT_FALSE(ValueFromJson(deep).ok());
}

TEST(JinjaJsonValueTest, FromJson_BigUnsignedBecomesFloat) {
  absl::StatusOr<Value> value = ValueFromJson(nlohmann::ordered_json(18446744073709551615ull));
  ASSERT_TRUE(value.ok());
  EXPECT_TRUE(value->is_float());
}

}  // namespace
}  // namespace moeserve::engine::jinja
