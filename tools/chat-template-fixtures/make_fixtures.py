#!/usr/bin/env python3
"""Renders public chat templates with jinja2, set up as Hugging Face transformers sets it up for
apply_chat_template, and writes what it renders (or the error it raises) as JSON fixtures.

The C# engine (src/RetNet.Ilgpu/Generation/ChatTemplates) is held to these files by
tests/RetNet.Ilgpu.Tests/Generation/ChatTemplateFixtureTests.cs; nothing here uses our renderer.
"""
import argparse
import json
import pathlib
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent


def environment(trim_blocks=True):
    """jinja2 as transformers configures it for chat templates: an immutable sandbox, trim_blocks and
    lstrip_blocks, the loopcontrols extension, raise_exception and strftime_now as globals, and a tojson filter
    that is json.dumps without HTML escaping and without ASCII escaping."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=trim_blocks, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# (file name, model, where the text was taken from, bos_token, eos_token, template text).
# The template texts are copied verbatim from the sources named; see README.md.
LLAMA_CPP = "ggml-org/llama.cpp tests/test-chat-template.cpp (a verbatim copy of the model's tokenizer_config.json)"
TEMPLATES = [
    ("chatml-qwen2", "Qwen/Qwen2-72B-Instruct",
     "tokenizer_config.json, as quoted in public code citing the ModelScope file", None, "<|im_end|>",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    ("chatml-openhermes", "teknium/OpenHermes-2.5-Mistral-7B", LLAMA_CPP, "<s>", "<|im_end|>",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    ("llama-2-chat", "meta-llama/Llama-2-7b-chat-hf",
     "tokenizer_config.json, as set verbatim in public code (tokenizer.chat_template = ...)", "<s>", "</s>",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
    ("llama-3-instruct", "meta-llama/Meta-Llama-3-8B-Instruct (llama.cpp's 'Llama-3' case)", LLAMA_CPP,
     "<|begin_of_text|>", "<|eot_id|>",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"),
    ("llama-3.1-instruct", "meta-llama/Llama-3.1-8B-Instruct",
     "tokenizer_config.json's chat_template as embedded verbatim in public code; kept in templates/", "<|begin_of_text|>",
     "<|eot_id|>", None),
    ("mistral-7b-instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.2", LLAMA_CPP, "<s>", "</s>",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
    ("zephyr-7b-beta", "HuggingFaceH4/zephyr-7b-beta",
     "tokenizer_config.json, as set verbatim in public training code", "<s>", "</s>",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"),
    ("gemma-7b-it", "google/gemma-7b-it (llama.cpp's copy, without the leading bos_token)", LLAMA_CPP, "<bos>", "<eos>",
     "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"),
    ("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", LLAMA_CPP, "<s>", "<|endoftext|>",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"),
    ("phi-3-small", "microsoft/Phi-3-small-8k-instruct", LLAMA_CPP, "<|endoftext|>", "<|endoftext|>",
     "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
    ("deepseek-coder-instruct", "deepseek-ai/deepseek-coder-33b-instruct", LLAMA_CPP, "<｜begin▁of▁sentence｜>",
     "<|EOT|>",
     "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}"),
    ("command-r-plus", "CohereForAI/c4ai-command-r-plus", LLAMA_CPP, "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% elif false == true %}{% set loop_messages = messages %}{% set system_message = 'You are Command-R, a brilliant, sophisticated, AI-assistant trained to assist human users by providing thorough responses. You are trained by Cohere.' %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% if system_message != false %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set content = message['content'] %}{% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% elif message['role'] == 'assistant' %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>'  + content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}"),
    ("vicuna-1.1", "eachadea/vicuna-13b-1.1 (llama.cpp's template for it)", LLAMA_CPP, "<s>", "</s>",
     "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + '\n\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + '\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}"),
    ("openchat-3.5", "openchat/openchat-3.5-0106", LLAMA_CPP, "<s>", "<|end_of_turn|>",
     "{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}"),
]

CONVERSATIONS = [
    ("system-multi-turn", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you?"},
    ]),
    ("no-system", [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "Another question"},
    ]),
    ("single-user", [{"role": "user", "content": "What is 2 + 2?"}]),
    ("ends-with-assistant", [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
    ]),
    ("unicode-and-whitespace", [
        {"role": "user", "content": "Grüß dich! 你好 🌍 — \"quotes\", 'apostrophes', {braces} {{ not jinja }}\n\tindented  "},
        {"role": "assistant", "content": "\n  Ça va? ñ ß ø 😀\n"},
        {"role": "user", "content": "<s>literal tags</s> and <|im_end|> in text"},
    ]),
    ("roles-not-alternating", [
        {"role": "user", "content": "First"},
        {"role": "user", "content": "Second"},
    ]),
]


# Engine constructs one at a time (the unit tests of Generation/ChatTemplateEngineTests.cs read them).
CONSTRUCT_CONTEXT = {"xs": ["a", "b", "c"], "m": {"role": "user", "content": " Hi there "}, "d": {"k": 1, "z": "v"},
       "people": [{"name": "Ann", "age": 3}, {"name": "Bob", "age": None}]}
CONSTRUCTS = [
 ("literals", "{{ 'a' ~ 1 ~ none }}|{{ {'a': [1, 2.5, true, none]} }}|{{ (1, 'x') }}|{{ \"it's\" }}"),
 ("loop", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ x }};{% endfor %}"),
 ("for-else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in xs if x != 'b' %}{{ x }}{{ loop.index }}{% endfor %}"),
 ("if-elif-else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %} {% endfor %}"),
 ("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% set ns.seen = true %}{% endfor %}{{ ns.total }} {{ ns.seen }}"),
 ("loop-scope", "{% set x = 0 %}{% for i in [1, 2] %}[{{ x }}]{% set x = i %}({{ x }}){% endfor %}{{ x }}"),
 ("set-block-and-tuple", "{% set a, b = 1, 2 %}{% set t %}<{{ a + b }}>{% endset %}{{ t }}{{ t | length }}"),
 ("macro", "{% macro tag(name, close=false) %}<{{ '/' if close else '' }}{{ name }}>{% endmacro %}{{ tag('b') }}x{{ tag('b', close=true) }}"),
 ("comments-and-dashes", "a  {#- c -#}  b|{%- if true -%}  x  {%- endif -%}  |{{- ' y ' -}}  |"),
 ("trim-and-lstrip", "  {% if true %}\nx\n  {% endif %}\ny\n    {# c #}\nz\n  {%+ if true %}k{% endif %}"),
 ("break-continue", "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
 ("access", "{{ m['role'] }}{{ m.content }}|{{ xs[1:] }}{{ xs[-1] }}{{ xs[::-1] }}{{ xs[:-1] }}|{{ 'hello'[1:3] }}{{ 'hello'[-1] }}|{{ people[1].name }}"),
 ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 1 / 2 }} {{ 4 / 2 }} {{ 2 * 3 + 1 }} {{ 2 ** 10 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ -(3) }} {{ 1.5e-7 }} {{ 123456789.0 * 1000 }}"),
 ("logic", "{{ 1 < 2 < 3 }} {{ 'a' in 'cat' }} {{ 'z' not in xs }} {{ 'k' in d }} {{ not true or false and true }} {{ 'y' if xs else 'n' }} {{ none or 'fallback' }} {{ 0 and 'x' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 'b' >= 'a' }}"),
 ("filters", "{{ m.content | trim }}|{{ xs | length }}|{{ 'abc' | upper }}{{ 'ABC' | lower }}|{{ nope | default('dflt') }}{{ '' | d('empty', true) }}{{ 'v' | default('w') }}|{{ xs | first }}{{ xs | last }}|{{ xs | join(', ') }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 12 | string }}|{{ d | items | list }}|{{ 'ab' | list }}|{{ people | selectattr('age') | map(attribute='name') | list }}|{{ people | map(attribute='name') | join(' & ') }}|{{ 'the big-dog' | title }}"),
 ("tojson", "{{ {'a': 'é\"\\n', 'b': [1, 2.5, none, true]} | tojson }}|{{ [1, {'k': []}] | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"),
 ("tests", "{{ nope is defined }}{{ nope is undefined }}{{ none is none }}{{ 'a' is string }}{{ d is mapping }}{{ xs is sequence }}{{ 1.5 is number }}{{ true is true }}{{ false is false }}{{ 1 is not string }}{{ 4 is divisibleby 2 }}{{ 'x' is equalto 'x' }}"),
 ("string-methods", "[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ 'xxhixx'.strip('x') }}]{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('lo', 'zz')) }}{{ 'a b  c'.split() }}{{ 'a,b,,c'.split(',') }}{{ 'a,b,c'.split(',', 1) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ \"they're here\".title() }}{{ 'aaa'.replace('a', 'b') }}"),
 ("dict-methods", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('k') }}{{ d.get('none') }}{{ d.get('none', 'x') }}{{ d.keys() | list }}"),
 ("undefined", "[{{ nope }}]{% if nope %}t{% else %}f{% endif %}[{% for x in nope %}x{% endfor %}]{{ nope | length }}[{{ d.missing }}]{{ d.missing is defined }}[{{ xs[10] }}]"),
 ("unicode", "{{ 'Grüß 你好 🌍' | upper }}|{{ 'Grüß 你好 🌍' | length }}|{{ '🌍x'[0] }}|{{ '\\u00e9\\x41' }}"),
]
CONSTRUCT_ERRORS = [
 ("attr-of-undefined", "{{ nope.attr }}"),
 ("add-undefined", "{{ nope + 'x' }}"),
 ("str-plus-int", "{{ 'a' + 1 }}"),
 ("call-undefined", "{{ nope() }}"),
]


def render_case(env, template, bos, eos, messages, add_generation_prompt):
    context = {"messages": messages, "add_generation_prompt": add_generation_prompt, "tools": None,
               "documents": None}
    if bos is not None:
        context["bos_token"] = bos
    if eos is not None:
        context["eos_token"] = eos
    try:
        return {"output": env.from_string(template).render(**context)}
    except jinja2.exceptions.TemplateError as e:
        # raise_exception raises TemplateError itself; jinja2's own failures are subclasses of it.
        kind = "raised" if type(e) is jinja2.exceptions.TemplateError else type(e).__name__
        return {"error": kind, "message": str(e)}


def build(output):
    env = environment()
    output.mkdir(parents=True, exist_ok=True)
    for name, model, source, bos, eos, template in TEMPLATES:
        if template is None:
            template = (HERE / "templates" / f"{name.replace('-instruct', '-8b-instruct')}.jinja").read_text("utf-8")
        cases = []
        for conversation, messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                case = {"conversation": conversation, "add_generation_prompt": add_generation_prompt,
                        "messages": messages}
                case.update(render_case(env, template, bos, eos, messages, add_generation_prompt))
                cases.append(case)
        fixture = {"name": name, "model": model, "source": source, "jinja2": jinja2.__version__,
                   "bos_token": bos, "eos_token": eos, "template": template, "cases": cases}
        text = json.dumps(fixture, ensure_ascii=False, indent=2) + "\n"
        (output / f"{name}.json").write_text(text, "utf-8")
    constructs = []
    for name, template in CONSTRUCTS + CONSTRUCT_ERRORS:
        try:
            case = {"output": env.from_string(template).render(**CONSTRUCT_CONTEXT)}
        except jinja2.exceptions.TemplateError as e:
            case = {"error": type(e).__name__, "message": str(e)}
        except TypeError as e:
            case = {"error": type(e).__name__, "message": str(e)}
        constructs.append({"name": name, "template": template, **case})
    (output / "constructs.json").write_text(json.dumps({"jinja2": jinja2.__version__, "context": CONSTRUCT_CONTEXT,
                                                        "cases": constructs}, ensure_ascii=False, indent=2) + "\n",
                                            "utf-8")
    # A negative control: the same renders with trim_blocks off, which the C# comparison must reject.
    loose = environment(trim_blocks=False)
    controls = []
    for name, _, _, bos, eos, template in TEMPLATES:
        if template is None or "\n{%" not in template:
            continue
        messages = CONVERSATIONS[0][1]
        strict = render_case(env, template, bos, eos, messages, True)
        untrimmed = render_case(loose, template, bos, eos, messages, True)
        if "output" in strict and "output" in untrimmed and strict["output"] != untrimmed["output"]:
            controls.append({"name": name, "output_without_trim_blocks": untrimmed["output"]})
    (output / "controls.json").write_text(json.dumps({"trim_blocks_off": controls}, ensure_ascii=False, indent=2)
                                          + "\n", "utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    args = parser.parse_args()
    build(args.output)


if __name__ == "__main__":
    main()
