"""Random chat conversations and Jinja snippets for checking moeserve's chat templates against
Python's jinja2 / transformers. Shared by tests/engine/chat/chat_template_oracle_test.py (fresh
cases on every run) and tools/oracle/render_chat_templates.py (the golden files).

A case is what moeserve-chat-template reads: {"messages": [...], "add_generation_prompt": bool,
"tools": [...] (optional), "kwargs": {...} (optional)}.
"""
import json
import os

# The real templates: name -> tokenizer_config.json, relative to the source tree.
TEMPLATE_CONFIGS = [
    ("deepseek-v3", "tests/data/configs/deepseek-v3.tokenizer_config.json"),
    ("deepseek-r1", "tests/data/configs/deepseek-r1.tokenizer_config.json"),
    ("kimi-k2-instruct", "tests/data/configs/kimi-k2-instruct.tokenizer_config.json"),
    ("deepseek-coder-6.7b-instruct",
     "tests/data/configs/deepseek-coder-6.7b-instruct.tokenizer_config.json"),
    ("kjv-v3-tiny", "models/kjv-v3-tiny/tokenizer_config.json"),
]

SPECIAL_TOKEN_NAMES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token", "additional_special_tokens"]


def template_configs(source_dir):
    return [(name, os.path.join(source_dir, path)) for name, path in TEMPLATE_CONFIGS]


def _token_text(token):
    if isinstance(token, dict):
        return token.get("content")
    return token


def special_tokens_map(config):
    """transformers' tokenizer.special_tokens_map for the tokens the config names."""
    out = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = config.get(name)
        if name == "additional_special_tokens" and isinstance(value, list):
            value = [_token_text(t) for t in value if _token_text(t) is not None]
        else:
            value = _token_text(value)
        if value:
            out[name] = value
    return out


def expected_failure(case):
    """apply_chat_template's own check before the template runs: an empty conversation fails
    (it reads messages[0]); moeserve's ChatTemplate refuses it too."""
    return "messages must not be empty" if not case["messages"] else None


def template_variables(case, special_tokens):
    """The variables render_jinja_template passes to the template for a case."""
    variables = {
        "messages": case["messages"],
        "tools": case.get("tools"),
        "documents": case.get("documents"),
        "add_generation_prompt": case.get("add_generation_prompt", False),
    }
    variables.update({**special_tokens, **case.get("kwargs", {})})
    return variables


TEXT_PIECES = [
    "Hello", "world", "How are you?", "", " ", "  leading", "trailing  ", "\n", "\n\n", "\t",
    "line one\nline two", "naïve café", "中文测试", "日本語", "한국어", "🙂👍🏽", "مرحبا", "Ελληνικά",
    "Привет", "ß", "\u00a0nbsp", "\u2028sep", "quote ' and \" and \\ backslash", "{{ not a tag }}",
    "{% if %}", "{# c #}", "<think>reasoning</think>answer", "</think>", "<think>",
    "<｜User｜>", "<|im_end|>", "```json\n{\"a\": 1}\n```", "\x01ctrl", "tab\there", "a" * 50,
    "1.5e10", "None", "null", "  \n  ", "end\n",
]


def random_text(rng, max_pieces=4):
    return "".join(rng.choice(TEXT_PIECES) for _ in range(rng.randint(0, max_pieces)))


def random_tool_call(rng):
    args = {"city": random_text(rng, 2), "n": rng.randint(-5, 100), "ok": rng.random() < 0.5}
    return {
        "type": "function",
        "function": {
            "name": rng.choice(["get_weather", "search", "lookup_ünïcode", "f"]),
            "arguments": json.dumps(args, ensure_ascii=rng.random() < 0.5),
        },
    }


def random_tools(rng):
    tools = []
    for i in range(rng.randint(1, 3)):
        tools.append({
            "type": "function",
            "function": {
                "name": "tool_%d" % i,
                "description": random_text(rng, 3),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "number", "description": "a float", "default": 0.5},
                        "q": {"type": "string", "enum": ["a", "b", "ü"]},
                    },
                    "required": ["q"],
                },
            },
        })
    return tools


def random_content(rng, template_name):
    if template_name == "kimi-k2-instruct" and rng.random() < 0.3:
        parts = []
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.2:
                parts.append({"type": "image_url", "image_url": {"url": "http://x/y.png"}})
            else:
                parts.append({"type": "text", "text": random_text(rng)})
        return parts
    return random_text(rng)


def random_message(rng, role, template_name):
    message = {"role": role, "content": random_content(rng, template_name)}
    if role == "assistant" and rng.random() < 0.3:
        message["tool_calls"] = [random_tool_call(rng) for _ in range(rng.randint(1, 3))]
        # DeepSeek's templates expect content None beside tool calls; others fail on it.
        if rng.random() < (0.6 if template_name in ("deepseek-v3", "deepseek-r1", "kjv-v3-tiny")
                           else 0.2):
            message["content"] = None
    if role == "assistant" and rng.random() < 0.15:
        message["reasoning_content"] = random_text(rng)
    if role == "tool":
        message["tool_call_id"] = "call_%d" % rng.randint(0, 99)
        if rng.random() < 0.5:
            message["name"] = "get_weather"
    return message


def random_case(rng, template_name):
    """A conversation: mostly well-formed turns, sometimes odd orders (which templates must
    render, or fail, the same way)."""
    messages = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        messages.append(random_message(rng, "system", template_name))
    turns = rng.randint(0, 5)
    odd = rng.random() < 0.15
    for _ in range(turns):
        if odd:
            messages.append(random_message(
                rng, rng.choice(["user", "assistant", "system", "tool"]), template_name))
            continue
        messages.append(random_message(rng, "user", template_name))
        assistant = random_message(rng, "assistant", template_name)
        messages.append(assistant)
        if "tool_calls" in assistant:
            for _ in range(rng.randint(1, 2)):
                messages.append(random_message(rng, "tool", template_name))
            if rng.random() < 0.7:
                final = random_message(rng, "assistant", template_name)
                final.pop("tool_calls", None)
                if final["content"] is None:
                    final["content"] = random_text(rng)
                messages.append(final)
    if rng.random() < 0.5 and not odd:
        messages.append(random_message(rng, "user", template_name))
    case = {"messages": messages, "add_generation_prompt": rng.random() < 0.5}
    if rng.random() < 0.3:
        case["tools"] = random_tools(rng)
    if rng.random() < 0.1:
        case["kwargs"] = {"thinking": rng.random() < 0.5}
    return case


def snippet_cases():
    """Jinja snippets with their variables: the interpreter beyond the real templates."""
    ctx = {
        "s": "héllo wörld", "n": 7, "f": 2.5, "l": [3, 1, 2], "e": [], "none": None,
        "d": {"b": 1, "a": [1, 2], "c": {"x": "y"}},
        "msgs": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                 {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}],
        "big": 12345678901234, "neg": -3, "ws": "  padded \n", "u": "中文🙂",
    }
    templates = [
        # expressions and operators
        "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}",
        "{{ 2 ** 10 }}|{{ 2 ** 3 ** 2 }}|{{ 2 ** -1 }}|{{ 1 / 4 }}|{{ 10 / 5 }}|{{ f * 2 }}",
        "{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 1.5e-5 }}|{{ 0.0001 }}|{{ -0.0 }}|{{ 3.0 }}",
        "{{ 'a' ~ 1 ~ none ~ true ~ 1.5 }}|{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ 'x' + 'y' }}",
        "{{ n > 3 and n < 10 }}|{{ 1 < 2 < 3 }}|{{ 3 > 2 > 5 }}|{{ not n }}|{{ none or 'z' }}",
        "{{ 'é' in s }}|{{ 'q' not in s }}|{{ 2 in l }}|{{ 'a' in d }}|{{ 'zz' in d }}",
        "{{ 1 == 1.0 }}|{{ true == 1 }}|{{ [1, 2] == [1, 2] }}|{{ (1,) == [1] }}|{{ d == d }}",
        "{{ n if n > 5 else 'small' }}|{{ 'x' if false }}|{{ (1, 2) }}|{{ (1,) }}|{{ () }}",
        "{{ -n }}|{{ +n }}|{{ -f }}|{{ neg|abs }}|{{ -2|abs }}|{{ not 1 is defined }}",
        "{{ big * 1000 }}|{{ big // 7 }}|{{ 7 / 2 * 2 }}|{{ 2.0 ** 0.5 }}",
        # subscripts and slices
        "{{ l[0] }}|{{ l[-1] }}|{{ l[5] }}|{{ l[1:] }}|{{ l[:-1] }}|{{ l[::-1] }}|{{ l[::2] }}",
        "{{ s[0] }}|{{ s[-1] }}|{{ s[1:4] }}|{{ s[::-1] }}|{{ u[1] }}|{{ u[-1] }}|{{ u[:2] }}",
        "{{ d.b }}|{{ d['a'][1] }}|{{ d.c.x }}|{{ d.zz }}|{{ d['zz'] }}|{{ d.a.0 }}",
        "{{ msgs[0].role }}|{{ msgs[-1]['content'] }}|{{ msgs[1:3]|length }}",
        # printing containers (Python repr)
        "{{ l }}|{{ d }}|{{ [1, 'a', none, true, 1.5, {'k': [1]}] }}|{{ ['it\\'s', 'q\"'] }}",
        "{{ {'a': 'b\\nc'} }}|{{ ['\\t', '\\x01', 'é', '\\u2028'] }}",
        # filters
        "{{ s|upper }}|{{ 'HeLLo'|lower }}|{{ 'hello world-foo'|title }}|{{ 'hELLO'|capitalize }}",
        "{{ ws|trim }}|[{{ 'xxaxx'|trim('x') }}]|{{ 'a-b-a'|replace('a', 'c') }}|{{ 'aaa'|replace('a', 'b', 2) }}",
        "{{ l|length }}|{{ s|length }}|{{ d|count }}|{{ e|length }}|{{ u|length }}",
        "{{ l|first }}|{{ l|last }}|{{ e|first }}|{{ l|join('-') }}|{{ l|join }}|{{ s|list|join(',') }}",
        "{{ undefined_var|default('dflt') }}|{{ none|default('x') }}|{{ ''|default('y', true) }}|{{ 0|d(5, true) }}",
        "{{ 3.7|int }}|{{ '42'|int }}|{{ '3.9'|int }}|{{ 'x'|int }}|{{ 'x'|int(9) }}|{{ '0x1f'|int(0, 16) }}|{{ '12'|float }}|{{ n|float }}",
        "{{ 2.5|round }}|{{ 3.5|round }}|{{ 3.14159|round(2) }}|{{ 2.675|round(2) }}|{{ 7|round }}|{{ 3.2|round(0, 'ceil') }}|{{ 3.8|round(method='floor') }}",
        "{{ l|sort }}|{{ l|sort(reverse=true) }}|{{ ['b', 'A', 'a']|sort }}|{{ ['b', 'A', 'a']|sort(case_sensitive=true) }}",
        "{{ d|dictsort }}|{{ {'b': 2, 'a': 3}|dictsort(by='value') }}|{{ d|items|list }}|{{ d|list }}",
        "{{ [1, '1', 1, 2]|unique|list }}|{{ ['A', 'a', 'b']|unique|list }}|{{ l|reverse|list }}|{{ s|reverse }}",
        "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}",
        "{{ msgs|rejectattr('role', 'eq', 'user')|list|length }}|{{ msgs|map(attribute='role')|list }}",
        "{{ [0, 1, '', 'a', none]|select|list }}|{{ [1, 2, 3, 4]|reject('odd')|list }}|{{ l|map('string')|join('+') }}",
        "{{ msgs|map(attribute='missing', default='?')|join }}|{{ l|sum }}|{{ l|max }}|{{ l|min }}|{{ ['b', 'A']|max }}",
        "{{ d|tojson }}|{{ l|tojson }}|{{ s|tojson }}|{{ none|tojson }}|{{ f|tojson }}|{{ [true, 1e20, 0.1]|tojson }}",
        "{{ d|tojson(indent=2) }}|{{ d|tojson(indent='\\t') }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}",
        "{{ d|tojson(separators=(',', ':')) }}|{{ u|tojson(ensure_ascii=true) }}|{{ {'k': []}|tojson(indent=0) }}|{{ {}|tojson(indent=2) }}",
        "{{ '\\u0001\\n\\t\"\\\\/\\u007f\\u2028'|tojson }}|{{ {1: 'a', true: 'b', none: 'c', 1.5: 'd'}|tojson }}",
        "{{ '<a href=\"x\">&\\'</a>'|escape }}|{{ 'x'|safe }}|{{ 5|string }}|{{ none|string }}|{{ 'a b  c'|wordcount }}",
        "{{ 'line1\\nline2\\n\\nline4'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ '%s=%d'|format('x', 3) }}",
        # tests
        "{{ n is defined }}|{{ nope is defined }}|{{ nope is undefined }}|{{ none is none }}|{{ s is string }}|{{ n is number }}",
        "{{ true is number }}|{{ 1 is integer }}|{{ 1.0 is float }}|{{ d is mapping }}|{{ l is sequence }}|{{ d is sequence }}",
        "{{ s is iterable }}|{{ n is iterable }}|{{ nope is iterable }}|{{ true is boolean }}|{{ false is false }}|{{ 1 is true }}",
        "{{ 4 is even }}|{{ 3 is odd }}|{{ 9 is divisibleby 3 }}|{{ 'abc' is lower }}|{{ 'ABC' is upper }}|{{ 2 is in l }}",
        "{{ n is eq 7 }}|{{ n is ne 7 }}|{{ n is gt 3 }}|{{ n is lt 3 }}|{{ n is ge 7 }}|{{ none is sameas none }}|{{ n is not none }}",
        # methods
        "{{ s.upper() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a-b-c'.rsplit('-', 1) }}",
        "{{ ' x '.strip() }}|{{ 'xxa'.lstrip('x') }}|{{ 'axx'.rstrip('x') }}|{{ s.startswith('hé') }}|{{ s.endswith(('x', 'ld')) }}",
        "{{ s.replace('l', 'L') }}|{{ s.find('w') }}|{{ s.find('q') }}|{{ s.count('l') }}|{{ '-'.join(['a', 'b']) }}|{{ 'hello world'.title() }}",
        "{{ 'x{}y{}'.format(1, 'z') }}|{{ '{a}-{0}'.format(5, a='A') }}|{{ 'ab'.capitalize() }}|{{ 'a\\nb\\r\\nc'.splitlines() }}",
        "{{ d.get('b') }}|{{ d.get('zz') }}|{{ d.get('zz', 0) }}|{{ d.keys()|list }}|{{ d.values()|list|length }}|{{ d['items'] is defined }}",
        "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ l.index(1) }}|{{ l.count(3) }}",
        # statements, scoping, loops
        "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }},{% endfor %}",
        "{% for x in l %}{{ loop.previtem }}-{{ loop.nextitem }}|{% endfor %}{% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
        "{% for x in l if x > 1 %}{{ x }}:{{ loop.length }} {% else %}none{% endfor %}|{% for x in e %}y{% else %}empty{% endfor %}",
        "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}",
        "{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{ x }},{% endfor %}{{ x }}",
        "{% for i in range(3) %}{% if loop.first %}{% set y = 1 %}{% endif %}[{{ y }}]{% endfor %}",
        "{% if true %}{% set z = 5 %}{% endif %}{{ z }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}",
        "{% set ns = namespace(count=0, items=[]) %}{% for m in msgs %}{% set ns.count = ns.count + 1 %}{% set ns.items = ns.items + [m.role] %}{% endfor %}{{ ns.count }} {{ ns.items }}",
        "{% set ns = namespace(a=1) %}{{ ns.a }}{{ ns.b }}|{{ ns }}",
        "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}|{% for c in 'héy' %}{{ c }}.{% endfor %}|{% for k in d %}{{ k }}{% endfor %}",
        "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}|{{ range(2, 10, 3)|list }}|{{ range(5, 0, -2)|list }}",
        "{% macro greet(name, greeting='Hi') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', greeting='Yo') }} {{ greet() }}",
        "{% macro m(x) %}[{{ x }}{{ varargs }}{{ kwargs }}]{% endmacro %}{{ m(1, 2, k=3) }}",
        "{% macro rec(n) %}{% if n > 0 %}{{ n }}{{ rec(n - 1) }}{% endif %}{% endmacro %}{{ rec(5) }}",
        "{% set block %}inner {{ n }}{% endset %}[{{ block }}]|{% set up | upper %}shout{% endset %}{{ up }}",
        "{% with a = 1, b = n %}{{ a + b }}{% endwith %}|{% filter upper %}quiet {{ s }}{% endfilter %}",
        "{{ dict(a=1, b='x') }}|{{ namespace(q=1).q }}|{% raw %}{{ raw }}{% endraw %}",
        "{% generation %}gen {{ n }}{% endgeneration %}|{{ 'a' 'b' }}|{{ \"dq\" }}",
        # whitespace control and the trim_blocks / lstrip_blocks environment
        "  {% if true %}\n  x\n  {% endif %}\n  y",
        "a  {%- if true -%}  b  {%- endif -%}  c\n{{- ' d ' -}}\n e",
        "{% for i in l %}\n  - {{ i }}\n{% endfor %}\n",
        "{# comment #}\nx{#- c -#}   y  {# c #}\nz\n\n",
        "    {%+ if true %}keep{% endif +%}\n  {{ 'v' }}\n  {% if true -%}\n   t\n  {%- endif %}",
        "line\r\nwindows\rmac\n{% if true %}\r\nx{% endif %}",
        "  {% raw -%}   r  {%- endraw %}  \n|",
        # errors (both sides must fail; raise_exception must match)
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}",
        "{% if msgs[0].role == 'system' %}{{ raise_exception('System message not supported: ' ~ msgs[0].content) }}{% endif %}",
        "{{ nope.attr }}", "{{ nope['k'] }}", "{{ nope + 1 }}", "{{ 'a' + 1 }}", "{{ 1 / 0 }}",
        "{{ l.append(4) }}", "{{ d.update({}) }}", "{{ 1 < 'a' }}", "{{ n() }}",
        "{% for x in n %}{% endfor %}", "{{ undefined_fn() }}", "{{ d.zz.yy }}",
        "{{ l|selectattr('x')|length }}", "{{ range(100001)|length }}", "{{ {'a': none}|tojson }}{{ nope|tojson }}",
        "{% set ns.x = 1 %}", "{% macro m() %}{% endmacro %}{{ m|tojson }}",
        "{{ 'x' * 3 }}{{ 'a' < 'b' }}{{ none['k'] }}{{ n.foo }}{{ l.bar }}|{{ s.nomethod }}",
        "{% if msgs|selectattr('role', 'equalto', 'nobody') %}generator is truthy{% endif %}",
        "{% set t = strftime_now('%Y') %}{{ t|length }}",
    ]
    return [{"template": t, "context": ctx} for t in templates]
