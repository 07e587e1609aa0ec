#!/usr/bin/env python3
"""Write tokenizer test vectors (JSONL) from Hugging Face `tokenizers`, for the C++ tokenizer.

    python tools/oracle/make_tokenizer_fixtures.py --tokenizer DIR --out FILE.jsonl [--seed 1234]
        [--corpus FILE] [--no-transformers-check]

DIR holds tokenizer.json (and, for the transformers cross-check, tokenizer_config.json). The test
strings depend only on --seed and the corpus (the KJV from `bible -f 'Gen1:1-Rev22:21'`, or
--corpus FILE), not on the tokenizer, so every tokenizer gets the same strings in the same order.

One JSON object per line:

    {"cat": "emoji", "text": "...", "ids": [...], "ids_with_special": [...]}
    (+ "decoded": "..."        only when decode(ids) != text)
    (+ "ids_transformers": [...] only when transformers disagrees with the rule in the meta file)

* ids              = Tokenizer.from_file(DIR/tokenizer.json).encode(text, add_special_tokens=False).ids
* ids_with_special = the same with add_special_tokens=True, i.e. tokenizer.json's own
                     post_processor (a TemplateProcessing adds BOS; a ByteLevel one adds nothing)
* decoded          = Tokenizer.decode(ids, skip_special_tokens=False)

A sidecar FILE.meta.json records versions, the seed, counts, and how transformers'
AutoTokenizer(DIR)(text)["input_ids"] relates to "ids" (e.g. "[BOS] + ids"), checked on every
string.

Optional extra outputs, for testing the C++ stages one at a time:

* --pretok-out P.jsonl: {"text": ..., "pieces": [...]} per string (same strings, "long" ones
  left out), pieces = the tokenizer.json pre_tokenizer alone (pre_tokenize_str, no added-token
  extraction), given as substrings of the original text; "".join(pieces) == text.
* --decode-out D.jsonl: {"ids": [...], "text": ..., "text_skip_special": ...} for seeded random id
  sequences over the whole vocab (added tokens included) and for prefixes of encodings that
  stop inside a UTF-8 character: decode(ids, skip_special_tokens=False / True).
"""

import argparse
import hashlib
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_tokenizer import read_corpus  # noqa: E402

DS_SPECIALS_V3 = [
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>",
    "<think>", "</think>", "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
    "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>", "<｜tool▁outputs▁end｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>",
]
# deepseek-coder's ASCII-bar added tokens (also <|EOT|> in the V3-style tokenizer).
DS_SPECIALS_CODER = ["<|EOT|>", "<|User|>", "<|Assistant|>", "<pad>"]

ENGLISH = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure we'll be fine; they're late, aren't they? You'd think so.",
    "SHE'S HERE. WE'LL GO. THEY'VE LEFT. I'D STAY. DON'T!",
    "It's 5 o'clock somewhere.",
    "Mr. O'Neil's dog's bone isn't Mrs. D'Angelo's.",
    "Rock 'n' roll, y'all.",
    "“Smart quotes” and ‘single’ ones — plus an em dash… and an ellipsis.",
    "e.g. i.e. etc. vs. U.S.A. Ph.D.",
    "Email me at alice.smith+tag@example.com or visit https://example.org/a/b?c=1&d=2#frag.",
    "The temperature was -3.5°C (25.7°F) at 06:45 on 2024-02-29.",
    "Price: $1,234.56 (was €1.299,00; now ¥98,765 or £12.34).",
    "C++ and C# aren't the same as .NET; __init__ is Python's constructor.",
    "Use --verbose or -v; set $HOME and %PATH%.",
    "A sentence with  two spaces, and   three, and a tab\there.",
    "Trailing spaces   ",
    "   Leading spaces",
    "Line one\nLine two\n\nLine four\n",
    "Windows line\r\nendings\r\n",
    "Mixed CASE words like iPhone, eBay, McDonald, and NASA's JPL.",
    "Numbers: 0 1 12 123 1234 12345 123456 1234567 3.14159 2.71828 1e10 6.022e23",
    "Phone: +1 (555) 010-9999 ext. 42",
    "Version 1.2.3-rc.4+build.567 released 2023/12/31.",
    "What?! No way!!! Really??? ...okay.",
    "#hashtag @mention $TICKER &amp; <tag> [link](url) {brace}",
    "snake_case_name, camelCaseName, PascalCaseName, kebab-case-name, SCREAMING_CASE",
    "He said \"don't\" and she said 'won't'.",
    "Tabs\tand\tmore\ttabs\t\t\tat end\t",
    "Ångström, naïve café, résumé, façade, Zürich, Øresund, smørrebrød, Þórr, jalapeño.",
    "Über Müller öffnet ÿ ý õ ÷ Á À ø ú þ ü ù ö û — Latin-1 letters.",
    "To be, or not to be: that is the question.",
    "In 1492, Columbus sailed the ocean blue.",
]

CODE = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n\n\nclass Foo(object):\n    \"\"\"Docstring.\"\"\"\n\n    def __init__(self, x: int = 0) -> None:\n        self._x = x  # comment\n\n    @property\n    def x(self):\n        return self._x\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(f\"{i} is even\")\n\telse:\n\t\tcontinue\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "lambda x: x**2 if x > 0 else -x // 3",
    "x = [1, 2, 3]; y = {'a': 1, \"b\": [None, True, False]}; z = (1,)",
    "#include <iostream>\n#include <vector>\n\nint main(int argc, char** argv) {\n  std::vector<int> v{1, 2, 3};\n  for (auto& x : v) std::cout << x << '\\n';\n  return 0;\n}\n",
    "template <typename T>\nconstexpr T max(const T& a, const T& b) noexcept { return a < b ? b : a; }\n",
    "ptr->field = &obj; arr[i++] += *p--; a <<= 2; b >>= 1; c != d && e || !f;",
    "namespace moe::engine {\nstruct Foo final : public Bar {\n  ~Foo() override = default;\n};\n}  // namespace moe::engine\n",
    "{\"name\": \"moeserve\", \"version\": \"0.1.0\", \"tags\": [\"a\", \"b\"], \"n\": -1.5e-3, \"ok\": true, \"x\": null}",
    "{\n  \"model_type\": \"deepseek_v3\",\n  \"hidden_size\": 7168,\n  \"rope_scaling\": {\n    \"factor\": 40\n  }\n}\n",
    "[\n\t{\"id\": 1},\n\t{\"id\": 2}\n]",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n\techo \"$f\" | tr 'a-z' 'A-Z' >> out.log 2>&1\ndone\n",
    "cd /tmp && ls -la | grep -v '^d' | awk '{print $9}' | sort -u | head -n 20",
    "export PATH=\"$HOME/.local/bin:$PATH\"; echo ${VAR:-default} $((1 + 2)) `date +%s`",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC LIMIT 10;",
    "<!DOCTYPE html>\n<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) error {\n\treturn nil\n}\n",
    "    \n        \n\t\n",
    "x=1\r\ny=2\r\n\r\nz=3",
    "# Title\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n",
    "a := b; c == d; e === f; g !== h; i => j; k -> l; m :: n; o ?? p; q ?. r",
    "0x7fffffff 0b1010 0o755 1_000_000 3.0f 2.5e-10L 'c' '\\0' \"\\t\\n\\\\\"",
    "// TODO(user): fix this\n/* multi\n * line\n */\n",
    "regex = r'^\\s+(?!\\S)|\\p{N}{1,3}[\\r\\n]*$'",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
]

CJK = [
    "你好，世界！",
    "我爱北京天安门。",
    "深度求索（DeepSeek）是一家人工智能公司。",
    "今天天气很好，我们去公园散步吧？",
    "中文、標點符號：「引號」『雙引號』《書名號》……——",
    "こんにちは、世界！",
    "ひらがなとカタカナと漢字を混ぜた文です。",
    "東京都渋谷区で会いましょう。",
    "ｶﾀｶﾅ ﾊﾝｶｸ (halfwidth katakana)",
    "アイウエオ・ヴァイオリン・ー",
    "안녕하세요, 세계!",
    "한국어 문장입니다. 감사합니다.",
    "각 (conjoining jamo)",
    "ＡＢＣ　ａｂｃ　１２３！？",
    "中文English混合123テスト한국어",
    "龥龦 一丁 〇 々 〆 ヿ ゟ ゠ ㈱ ㍻",
    "𠀀𠀁𪚥 (CJK extension B)",
    "「こんにちは」と言った。\n次の行。",
    "数字１２３和123和一二三",
    "汉字\n\n汉字  汉字\t汉字",
]

EMOJI = [
    "😀", "😀😃😄", "I ❤️ you", "👍", "👍🏻👍🏼👍🏽👍🏾👍🏿",
    "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑‍🤝‍🧑", "🏳️‍🌈", "🏴‍☠️",
    "🇺🇸🇯🇵🇨🇳🇰🇷🇩🇪", "🇺🇸 flag", "1️⃣2️⃣#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "☺︎ vs ☺️",
    "Great job! 🎉🎉🎉", "🤔💭 hmm...", "emoji-in-word🙂word", " 🚀 ", "🫠🫡🪿",
]

COMBINING = [
    "e\u0301", "e\u0301\u0301\u0301", "cafe\u0301 vs café", "n\u0303 vs ñ", "\u0301 leading mark",
    "a\u0308o\u0308u\u0308", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "x\u20d7 vector",
    "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य।", "क्षत्रिय",
    "السلام عليكم", "عَلَى عَيْنِي وَرَأْسِي", "مرحبا 123 بالعالم ٤٥٦",
    "שלום עולם", "שָׁלוֹם", "ภาษาไทย สวัสดีครับ", "ก้ก ก้้ก ้ก",
    "Tiếng Việt có dấu: Nguyễn, Trường, Đặng", "ελληνικά Ἀθῆναι", "Привет, мир! Ёлка.",
    "ԱԲԳ ქართული ᚠᚢᚦ ሰላም", "தமிழ் తెలుగు ಕನ್ನಡ മലയാളം",
]

WHITESPACE = [
    "", " ", "  ", "   ", "    ", " " * 16, " " * 65, "\t", "\t\t", "\n", "\n\n", "\n" * 10,
    "\r\n", "\r\n\r\n", "\r", "\r\r\n", " \n", "  \n", "\n ", "\n  ", " \n ", "\t\n", "\n\t",
    " \t \n \r\n ", "\u00a0", "\u00a0\u00a0", "a\u00a0b", "\u3000", "a\u3000b", "\u2028", "\u2029",
    "a\u2028b", "\u000b\u000c", "a\u000bb\u000cc", "\u0085", "\u200b", "a\u200bb", "\ufeff",
    "\ufeffBOM", "\u2003em\u2002en\u2009thin", "a \n b", "a  \n  b", "a\n\n\nb", "a   b",
    "a   ", "   a", "a\n   ", "   \na", "a \t b", "x  \r\n  y", " a b c ", "  hello  world  ",
    "end.   \n", "end.\n\n\n", "\n\n\nstart", "word\n\n  \n\nword", "\t\tindented\n\t\t\tmore",
]

DIGITS = [
    "0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "1,234.56", "1.234,56", "-0.001", "+42", "3.14159265358979", "1e-9", "6.02E+23",
    "2024-01-31", "31/12/1999", "12:34:56", "2024-01-31T12:34:56.789Z", "v1.2.3", "192.168.0.1",
    "10%", "50/50", "1/2", "99.9%", "$5", "5$", "#1", "No. 9", "1st 2nd 3rd 4th 21st",
    "٠١٢٣٤٥٦٧٨٩", "१२३४५", "１２３４５", "½ ¼ ¾ ⅓", "x² y³ ¹⁰", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ", "①②③",
    "a1b2c3", "abc123def456", "123abc", "１２３abc", "0000000", "007", "1 000 000",
    "3.14.15.92", "100,000,000", "9" * 40, "12 345 678", "Ge1:1", "Rev22:21",
]

PUNCT = [
    "!", "!!", "!!!", "?!", "...", "…", "---", "--", "—", "-", "''", "\"\"", "``", "'", "\"",
    "<<>>", "<>", "()", "[]", "{}", "@#$%^&*", "~`|\\", "\\\\", "//", "/*", "*/", "::", ";;",
    "!\n", "!!\r\n\r\n", ".\n\n", " .\n", " ...\n\n\n", ",\n", "?\r\n", "\"\n", ")\n\n(",
    "(hello)", "[world]", "{x}", "<tag>", "</tag>", "'hello'", "\"hello\"", ".com", "#include",
    "--flag", "-x", "$HOME", "%d", "&amp;", "@user", "_private", "__dunder__", "a_b", "a-b",
    "a.b.c", ".NET", "...and", "!important", "?query", "+plus", "=equals", "|pipe", "^caret",
    "~tilde", "`code`", "a/b", "a\\b", "«quoted»", "¿Qué?", "¡Hola!", "〈〉《》【】", "、。・",
    "•·°±×÷", "©®™", "∑∫√∞≠≤≥", "←↑→↓⇒", "♠♣♥♦", "€£¥₹₿", "§¶†‡",
]

REGEX_EDGE = [
    "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'x", "'", "''s", "'s'",
    "it's", "IT'S", "It'S", "don't", "DON'T", "we'll", "WE'LL", "I'd", "they're", "you've",
    "I'm", "x's", "rock'n'roll", " 's", " 'LL", "’s", "it’s", "'123", "'日本", "'é", "'\n",
    "\"abc", "(abc", "[abc", "-abc", "_abc", ".abc", "@abc", "#abc", "$abc", "~abc", "`abc",
    "!abc", "?abc", "/abc", "\\abc", "|abc", "^abc", "{abc", "=abc", "<abc", ">abc", "+abc",
    "*abc", "%abc", "&abc", ",abc", ":abc", ";abc", "(é", "-é", "(Straße", "«abc", "“abc",
    " abc", "  abc", "\tabc", "\nabc", "1abc", "é", " é", "  é", "\u00a0é", "\u00a0abc",
    "a\u0301", " \u0301", "\u0301a", "!\u0301", "a!\u0301!", "abc def", "abc  def", "abc\tdef",
    "abc \n", "abc  \n", "abc \n\n", "abc \r\n", "abc\n \n", "abc \n def", "a \n\n  b",
    "x \t\n y", " \n\n", "  \n\n  ", "\n \n \n", "foo   \nbar", "foo\n   bar", "foo   bar",
    "foo.\n", "foo.\r\n", "foo!!\n\n", "foo .\n", "foo ...\n", "foo;\nbar", "foo:\n\n",
    "+-*/", "a+b", "a + b", "a+ b", "a +b", "1+1=2", "x==y", "x == y", "[1,2,3]",
    "𝐁𝐨𝐥𝐝 𝕯𝖔𝖚𝖇𝖑𝖊", "ǅ ǈ ǋ", "ß ẞ", "ﬁ ﬂ", "Ǆ", "µ", "ª º", "ʰ ʲ", "ᴀʙᴄ",
]

CHAT = [
    "<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hello!<｜Assistant｜>",
    "<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\nSimple.\n</think>\n\n4<｜end▁of▁sentence｜>",
    "<｜User｜>Call a tool<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>",
    "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{\"temp\": 21}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
    "<｜fim▁begin｜>def f(x):\n    <｜fim▁hole｜>\n    return y<｜fim▁end｜>",
    "hi<｜end▁of▁sentence｜>there",
    "<think>x</think>",
    "<think></think>",
    " <think> ",
    "<think>\n\n</think>\n\n",
    "<<think>>",
    "<think",
    "think>",
    "</think><think>",
    "<｜User｜><｜User｜>",
    "<｜User｜",
    "User｜>",
    "<｜USER｜>",
    "<|User|>Hello<|Assistant|>Hi<|EOT|>",
    "<｜▁pad▁｜><｜▁pad▁｜><｜▁pad▁｜>",
    "text <｜end▁of▁sentence｜> text",
    "a<｜begin▁of▁sentence｜>b",
    "<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>",
    "<pad>",
    "### Instruction:\nWrite hello world\n### Response:\nprint('hello world')\n<|EOT|>\n",
    "<｜User｜>你好<｜Assistant｜><think>用户打招呼。</think>你好！有什么可以帮你？",
    "<｜fim▁hole｜>",
    "<｜begin▁of▁sentence｜>\n",
    "<｜end▁of▁sentence｜>\n\n",
]

RANDOM_RANGES = [  # (lo, hi, weight); surrogates are never drawn
    (0x00, 0x1F, 1), (0x20, 0x7E, 6), (0x7F, 0x9F, 1), (0xA0, 0x24F, 3), (0x250, 0x2FF, 1),
    (0x300, 0x36F, 2), (0x370, 0x52F, 2), (0x530, 0x10FF, 2), (0x1100, 0x2FFF, 2),
    (0x3000, 0x30FF, 3), (0x3100, 0x4DFF, 1), (0x4E00, 0x9FFF, 3), (0xA000, 0xABFF, 1),
    (0xAC00, 0xD7A3, 2), (0xE000, 0xF8FF, 1), (0xF900, 0xFFFF, 1), (0x10000, 0x1F0FF, 2),
    (0x1F100, 0x1FAFF, 3), (0x20000, 0x2FA1F, 1), (0x30000, 0x3134F, 1), (0xE0000, 0xE01EF, 1),
    (0xF0000, 0x10FFFF, 1),
]


def rand_char(rng):
    lo, hi, _ = rng.choices(RANDOM_RANGES, weights=[w for _, _, w in RANDOM_RANGES])[0]
    return chr(rng.randint(lo, hi))


def build_strings(seed, corpus_text):
    rng = random.Random(seed)
    out = []

    def add(cat, items):
        for t in items:
            out.append((cat, t))

    add("english", ENGLISH)
    add("code", CODE)
    add("cjk", CJK)
    add("emoji", EMOJI)
    add("combining", COMBINING)
    add("whitespace", WHITESPACE)
    add("digits", DIGITS)
    add("punct", PUNCT)
    add("regex_edge", REGEX_EDGE)
    add("special", CHAT)
    add("special", DS_SPECIALS_V3 + DS_SPECIALS_CODER)
    for sp in DS_SPECIALS_V3 + DS_SPECIALS_CODER:
        add("special", [f"hi{sp}there", f" {sp} ", f"{sp}\n", f"x{sp}{sp}y"])

    # Code, line by line and with indentation changes.
    for snippet in CODE:
        add("code", [ln for ln in snippet.split("\n") if ln])
        add("code", [snippet.replace("    ", "\t"), snippet.replace("\n", "\r\n")])

    # KJV verses: whole lines (with/without the newline), multi-verse chunks, transformed ones.
    lines = corpus_text.splitlines(keepends=True)
    for _ in range(300):
        ln = rng.choice(lines)
        add("kjv", [ln if rng.random() < 0.5 else ln.rstrip("\n")])
    for _ in range(60):
        i = rng.randrange(len(lines) - 5)
        add("kjv", ["".join(lines[i:i + rng.randint(2, 5)])])
    for _ in range(120):
        ln = rng.choice(lines).rstrip("\n")
        body = ln.split(" ", 1)[1] if " " in ln else ln
        f = rng.randrange(6)
        t = [body.upper(), body.lower(), body.replace(" ", "  "), " " + body + " ",
             body.replace(", ", ",\n"), body.replace(" ", "\t")][f]
        add("kjv_variant", [t])

    # Word/fragment soup: the boundaries between categories are where pre-tokenizers go wrong.
    words = []
    for ln in rng.sample(lines, 200):
        words += ln.split()
    fragments = (words[:400] + [" ", "  ", "\t", "\n", "\r\n", " \n", "\n\n", "   "] * 8
                 + DIGITS + PUNCT + REGEX_EDGE + EMOJI + CJK[:10] + COMBINING[:10]
                 + DS_SPECIALS_V3 + DS_SPECIALS_CODER)
    for _ in range(700):
        k = rng.randint(2, 7)
        add("mixed", ["".join(rng.choice(fragments) for _ in range(k))])

    # Mixed scripts, hand-picked.
    add("mixed", ["Hello世界", "abc日本def", "Привет мир hello", "ΑΒΓ αβγ abc", "русский123текст",
                  "日本語のtextと中文和한국어", "emoji😀中文", "مرحبا hello שלום", "x=你好;y='世界'",
                  "file_名前.txt", "ID：１２３abc", "a。b，c！d？"])

    # Long strings.
    add("long", ["a" * 1000, "ab" * 600, "Supercalifragilisticexpialidocious" * 20,
                 "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
                 " " * 1000, "\n" * 300, "!" * 500, "1234567890" * 50, "日本" * 300,
                 "😀" * 200, "é" * 300, "e\u0301" * 200, "aA" * 400,
                 "https://example.com/" + "/".join("seg%d" % i for i in range(80)),
                 "".join(rng.choice("0123456789abcdef") for _ in range(512)),
                 "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                         for _ in range(800)) + "==",
                 " ".join(rng.choice(words) for _ in range(300))])

    # Random unicode from several planes (never surrogates).
    for _ in range(350):
        add("random_unicode", ["".join(rand_char(rng) for _ in range(rng.randint(1, 30)))])

    # Random byte-ish ASCII, control characters included.
    ascii_pool = [chr(c) for c in range(128)]
    ascii_weights = [1 if c < 32 or c == 127 else 4 for c in range(128)]
    for _ in range(300):
        n = rng.randint(1, 40)
        add("random_ascii", ["".join(rng.choices(ascii_pool, weights=ascii_weights, k=n))])

    # Dedupe, keeping the first category and order.
    seen, uniq = set(), []
    for cat, t in out:
        if t not in seen:
            seen.add(t)
            uniq.append((cat, t))
    return uniq


def dumps_line(obj):
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # Escape the characters that str.splitlines()-style readers treat as line breaks; they can
    # only occur inside JSON strings, so the line stays valid JSON with the same value.
    for ch in ("\u2028", "\u2029", "\u0085", "\u001c", "\u001d", "\u001e"):
        s = s.replace(ch, "\\u%04x" % ord(ch))
    return s


def transformers_rule(tok_dir, records):
    """Checks how transformers' AutoTokenizer (with tokenizer_config.json) relates to `ids`."""
    import transformers
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(tok_dir)
    prefix = [hf.bos_token_id] if getattr(hf, "add_bos_token", False) else []
    suffix = [hf.eos_token_id] if getattr(hf, "add_eos_token", False) else []
    mismatches = 0
    for r in records:
        got = hf(r["text"])["input_ids"]
        nospecial = hf(r["text"], add_special_tokens=False)["input_ids"]
        if got != prefix + r["ids"] + suffix or nospecial != r["ids"]:
            r["ids_transformers"] = got
            mismatches += 1
    return {
        "transformers_version": transformers.__version__,
        "transformers_class": type(hf).__name__,
        "transformers_ids_with_special_rule":
            " + ".join(([f"[{prefix[0]}]"] if prefix else []) + ["ids"] +
                       ([f"[{suffix[0]}]"] if suffix else [])),
        "transformers_mismatches": mismatches,
    }


def write_pretok(tok, records, path):
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            if r["cat"] == "long":
                continue
            text = r["text"]
            pieces = [text[a:b] for _, (a, b) in tok.pre_tokenizer.pre_tokenize_str(text)]
            assert "".join(pieces) == text, text
            f.write(dumps_line({"text": text, "pieces": pieces}) + "\n")
            n += 1
    print(f"{path}: {n} strings, {os.path.getsize(path)} bytes", file=sys.stderr)


def write_decode(tok, records, seed, path):
    rng = random.Random(seed + 2)
    n_vocab = tok.get_vocab_size(with_added_tokens=True)
    seqs = []
    for _ in range(300):
        seqs.append([rng.randrange(n_vocab) for _ in range(rng.randint(1, 12))])
    # Prefixes of real encodings of non-ASCII text: most end inside a UTF-8 character.
    multi = [r for r in records if len(r["ids"]) >= 2 and any(ord(c) > 127 for c in r["text"])]
    for r in rng.sample(multi, min(150, len(multi))):
        seqs.append(r["ids"][:rng.randint(1, min(len(r["ids"]) - 1, 16))])
    seqs.append([])
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for ids in seqs:
            f.write(dumps_line({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                                "text_skip_special": tok.decode(ids, skip_special_tokens=True)})
                    + "\n")
    print(f"{path}: {len(seqs)} id sequences, {os.path.getsize(path)} bytes", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json")
    ap.add_argument("--out", required=True, help="output .jsonl")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", help="UTF-8 text instead of `bible -f 'Gen1:1-Rev22:21'`")
    ap.add_argument("--no-transformers-check", action="store_true")
    ap.add_argument("--pretok-out", help="also write pre-tokenizer pieces (JSONL)")
    ap.add_argument("--decode-out", help="also write decode vectors for id sequences (JSONL)")
    args = ap.parse_args()

    tok_path = os.path.join(args.tokenizer, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    strings = build_strings(args.seed, read_corpus(args.corpus))

    records, n_decoded, cats = [], 0, {}
    for cat, text in strings:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_sp = tok.encode(text, add_special_tokens=True).ids
        r = {"cat": cat, "text": text, "ids": ids, "ids_with_special": ids_sp}
        dec = tok.decode(ids, skip_special_tokens=False)
        if dec != text:
            r["decoded"] = dec
            n_decoded += 1
        records.append(r)
        cats[cat] = cats.get(cat, 0) + 1

    meta = {
        "tokenizer_json_sha256": hashlib.sha256(open(tok_path, "rb").read()).hexdigest(),
        "tokenizers_version": tokenizers.__version__,
        "seed": args.seed,
        "count": len(records),
        "categories": cats,
        "decoded_differs": n_decoded,
        "ids_field": "encode(text, add_special_tokens=False).ids",
        "ids_with_special_field": "encode(text, add_special_tokens=True).ids (tokenizer.json post_processor)",
        "decoded_field": "decode(ids, skip_special_tokens=False), present only when != text",
    }
    if not args.no_transformers_check:
        meta.update(transformers_rule(args.tokenizer, records))

    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(dumps_line(r) + "\n")
    meta["jsonl_sha256"] = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    meta_path = os.path.splitext(args.out)[0] + ".meta.json"
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=2)
        f.write("\n")

    if args.pretok_out:
        write_pretok(tok, records, args.pretok_out)
    if args.decode_out:
        write_decode(tok, records, args.seed, args.decode_out)

    # Self-check: reload both files and re-encode a sample with a fresh Tokenizer.
    tok2 = Tokenizer.from_file(tok_path)
    with open(args.out, encoding="utf-8") as f:
        back = [json.loads(ln) for ln in f.read().split("\n") if ln]
    assert len(back) == len(records)
    for r in random.Random(args.seed + 1).sample(back, min(300, len(back))):
        assert tok2.encode(r["text"], add_special_tokens=False).ids == r["ids"], r["text"]
        assert tok2.encode(r["text"]).ids == r["ids_with_special"], r["text"]
    print(f"{args.out}: {len(records)} strings, {os.path.getsize(args.out)} bytes, "
          f"{n_decoded} with decoded != text; meta {json.dumps({k: meta[k] for k in meta if k.startswith('transformers')})}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
