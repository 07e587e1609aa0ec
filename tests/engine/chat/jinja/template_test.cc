// The Jinja interpreter on its own: Jinja2 3.1 semantics as transformers configures them
// (expected strings were checked against Python's jinja2 with transformers' environment; the
// oracle test tests/engine/chat/chat_template_oracle_test.py compares many more live), errors
// that name the template and line, and the bounds that keep hostile templates harmless.
#include "engine/chat/jinja/template.h"

#include <string>

#include "absl/strings/match.h"
#include "engine/chat/jinja/json_value.h"
#include "gtest/gtest.h"

namespace moeserve::engine::jinja {
namespace {

absl::StatusOr<std::string> Render(std::string_view source,
                                   const nlohmann::ordered_json& context = {},
                                   const RenderLimits& limits = {}) {
  absl::StatusOr<Template> parsed = Template::Parse(source, "chat template (test)");
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<Value> variables =
      ValueFromJson(context.is_null() ? nlohmann::ordered_json::object() : context);
  if (!variables.ok()) return variables.status();
  return parsed->Render(variables->as_dict(), limits);
}

std::string RenderOk(std::string_view source, const nlohmann::ordered_json& context = {}) {
  absl::StatusOr<std::string> text = Render(source, context);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "<error>";
}

TEST(JinjaTemplateTest, Arithmetic_FollowsPython) {
  EXPECT_EQ(RenderOk("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 1 / 2 }} {{ 2 ** 3 ** 2 }}"),
            "3 -4 2 0.5 64");
  EXPECT_EQ(RenderOk("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-5 }} {{ 3.0 }} {{ 1 + true }}"),
            "0.30000000000000004 1e+16 1.5e-05 3.0 2");
  EXPECT_EQ(RenderOk("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 2 }} {{ [1] + [2] }}"),
            "a1NoneTrue abab [1, 2]");
}

TEST(JinjaTemplateTest, Containers_PrintAsPythonRepr) {
  EXPECT_EQ(RenderOk("{{ [1, 'a', none, true, 1.5, {'k': (1,)}] }}"),
            "[1, 'a', None, True, 1.5, {'k': (1,)}]");
  EXPECT_EQ(RenderOk("{{ [\"it's\", 'q\"', '\\n'] }}"), "[\"it's\", 'q\"', '\\n']");
}

TEST(JinjaTemplateTest, Strings_IndexAndSliceByCodePoint) {
  const nlohmann::ordered_json context = {{"s", "héllo 中文"}};
  EXPECT_EQ(RenderOk("{{ s[1] }}|{{ s[-1] }}|{{ s[1:4] }}|{{ s[::-1] }}|{{ s|length }}", context),
            "é|文|éll|文中 olléh|8");
}

TEST(JinjaTemplateTest, Whitespace_TrimBlocksAndLstripBlocksLikeTransformers) {
  EXPECT_EQ(RenderOk("  {% if true %}\n  x\n  {% endif %}\n  y"), "  x\n  y");
  EXPECT_EQ(RenderOk("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(RenderOk("    {%+ if true %}keep{% endif +%}\n!"), "    keep\n!");
  EXPECT_EQ(RenderOk("{# c #}\nx{{ 'y' }}\n"), "xy");  // the trailing newline is dropped
  EXPECT_EQ(RenderOk("a\r\nb"), "a\nb");
}

TEST(JinjaTemplateTest, Loops_ExposeLoopVariablesAndControls) {
  EXPECT_EQ(RenderOk("{% for x in [5, 6, 7] %}{{ loop.index }}{{ loop.first }}{{ loop.last }}"
                     "{{ loop.revindex }}{{ loop.length }},{% endfor %}"),
            "1TrueFalse33,2FalseFalse23,3FalseTrue13,");
  EXPECT_EQ(RenderOk("{% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}"
                     "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "023");
  EXPECT_EQ(RenderOk("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(RenderOk("{% for x in [3, 1, 2] if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}"),
            "3/2 2/2 ");
  EXPECT_EQ(RenderOk("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
}

TEST(JinjaTemplateTest, Scoping_EachIterationStartsFromTheEnclosingValues) {
  EXPECT_EQ(RenderOk("{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{ x }},"
                     "{% endfor %}{{ x }}"),
            "12,12,12,1");
  EXPECT_EQ(RenderOk("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
}

TEST(JinjaTemplateTest, Namespaces_CarryStateOutOfLoops) {
  EXPECT_EQ(RenderOk("{% set ns = namespace(n=0, seen=[]) %}{% for m in msgs %}"
                     "{% set ns.n = ns.n + 1 %}{% set ns.seen = ns.seen + [m.role] %}{% endfor %}"
                     "{{ ns.n }} {{ ns.seen }}",
                     {{"msgs", {{{"role", "user"}}, {{"role", "assistant"}}}}}),
            "2 ['user', 'assistant']");
}

TEST(JinjaTemplateTest, Macros_TakeDefaultsKeywordsAndRecurse) {
  EXPECT_EQ(RenderOk("{% macro g(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}"
                     "{{ g('Ann') }} {{ g('Bo', greeting='Yo') }} {{ g() }}"),
            "Hi, Ann! Yo, Bo! Hi, !");
  EXPECT_EQ(RenderOk("{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}"
                     "{{ r(3) }}"),
            "321");
}

TEST(JinjaTemplateTest, Undefined_IsEmptyFalsyAndFailsOnUse) {
  EXPECT_EQ(RenderOk("[{{ nope }}]{{ nope is defined }}{{ nope|default('d') }}{{ nope|length }}"
                     "{% for x in nope %}x{% endfor %}"),
            "[]Falsed0");
  EXPECT_EQ(RenderOk("{{ d.missing }}|{{ d['missing'] is defined }}", {{"d", {{"a", 1}}}}),
            "|False");
  EXPECT_FALSE(Render("{{ nope.attr }}").ok());
  EXPECT_FALSE(Render("{{ nope + 1 }}").ok());
}

TEST(JinjaTemplateTest, Sandbox_RefusesMutatingMethods) {
  const absl::StatusOr<std::string> text = Render("{{ [1].append(2) }}");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().message(),
            "chat template (test) line 1: access to attribute 'append' of 'list' object is "
            "unsafe.");
  EXPECT_EQ(RenderOk("{{ [1].append }}"), "");
}

TEST(JinjaTemplateTest, ToJson_MatchesTransformersJsonDumps) {
  EXPECT_EQ(RenderOk("{{ d|tojson }}", {{"d", {{"b", 1}, {"a", {1.5, "é\n"}}}}}),
            "{\"b\": 1, \"a\": [1.5, \"é\\n\"]}");
  EXPECT_EQ(RenderOk("{{ {'b': 1, 'a': []}|tojson(indent=2, sort_keys=true) }}"),
            "{\n  \"a\": [],\n  \"b\": 1\n}");
}

TEST(JinjaTemplateTest, Errors_NameTheTemplateAndLine) {
  absl::StatusOr<std::string> text = Render("line 1\n{{ x }}\n{{ y|foo }}");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "chat template (test) line 3: unknown filter 'foo'");

  text = Render("a\n\n{% for %}");
  ASSERT_FALSE(text.ok());
  EXPECT_TRUE(absl::StartsWith(text.status().message(), "chat template (test) line 3: "))
      << text.status();

  text = Render("{% if true %}\n{{ 1 / 0 }}\n{% endif %}");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().message(), "chat template (test) line 2: division by zero");

  text = Render("{% if x %}");
  ASSERT_FALSE(text.ok());
  EXPECT_TRUE(absl::StrContains(text.status().message(), "unexpected end of template"));

  EXPECT_FALSE(Render("{% include 'x' %}").ok());
  EXPECT_FALSE(Render("{% break %}").ok());
  EXPECT_FALSE(Render("{# never closed").ok());
}

TEST(JinjaTemplateTest, RaiseException_PassesTheTemplatesMessageThrough) {
  const absl::StatusOr<std::string> text =
      Render("x\n{{ raise_exception('Conversation roles must alternate') }}");
  ASSERT_FALSE(text.ok());
  EXPECT_TRUE(IsRaisedByTemplate(text.status()));
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(text.status().message(), "Conversation roles must alternate");
  EXPECT_FALSE(IsRaisedByTemplate(Render("{{ 1 / 0 }}").status()));
}

TEST(JinjaTemplateTest, Bounds_OutputIsCapped) {
  RenderLimits limits;
  limits.max_output_bytes = 1000;
  const absl::StatusOr<std::string> text =
      Render("{% for i in range(2000) %}x{% endfor %}", {}, limits);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kResourceExhausted) << text.status();
  EXPECT_EQ(Render("{{ 'x' * 1000000000 }}").status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(JinjaTemplateTest, Bounds_WorkIsCapped) {
  const absl::StatusOr<std::string> text =
      Render("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
  EXPECT_EQ(text.status().code(), absl::StatusCode::kResourceExhausted) << text.status();
  EXPECT_FALSE(Render("{{ range(100001)|length }}").ok());  // the sandbox's MAX_RANGE
}

TEST(JinjaTemplateTest, Bounds_RecursionIsCapped) {
  EXPECT_EQ(Render("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}").status().code(),
            absl::StatusCode::kResourceExhausted);
  // Nesting too deep for the parser: refused, not a stack overflow.
  const std::string deep =
      "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_FALSE(Render(deep).ok());
  const std::string deep_ifs = [] {
    std::string s;
    for (int i = 0; i < 5000; ++i) s += "{% if true %}";
    return s;
  }();
  EXPECT_FALSE(Render(deep_ifs).ok());
}

TEST(JinjaTemplateTest, Bounds_SelfReferenceAndDeepValuesDoNotCrash) {
  // Python would raise RecursionError here; moeserve must neither hang nor overflow.
  const absl::StatusOr<std::string> text =
      Render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}");
  EXPECT_TRUE(text.ok()) << text.status();
  const absl::StatusOr<std::string> deep = Render(
      "{% set ns = namespace(v=[]) %}{% for i in range(5000) %}{% set ns.v = [ns.v] %}"
      "{% endfor %}{{ ns.v|tojson }}{{ ns.v == ns.v }}{{ ns.v }}");
  EXPECT_FALSE(deep.ok());  // tojson refuses the depth
}

TEST(JinjaTemplateTest, Parse_IsReusableAcrossRenders) {
  absl::StatusOr<Template> parsed = Template::Parse("{{ x }}", "t");
  ASSERT_TRUE(parsed.ok());
  for (int i = 0; i < 3; ++i) {
    Dict context;
    context.Set(Value::String("x"), Value::Int(i));
    EXPECT_EQ(*parsed->Render(context), std::to_string(i));
  }
}

}  // namespace
}  // namespace moeserve::engine::jinja
