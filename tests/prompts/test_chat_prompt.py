"""Prompts as Ollama writes them: its bundled templates, its template_test.go and prompt_test.go cases."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from imgscribe.prompts import Template
from imgscribe.prompts.chat import (
    chat_prompt,
    collate,
    execute,
    generate_prompt,
    render_chat,
    render_generate,
    tag_images,
)

TEMPLATES = Path(__file__).parent / "ollama_templates"
NAMES = sorted(p.name for p in TEMPLATES.glob("*.gotmpl"))

S = "You are a helpful assistant."
U1 = "Hello, how are you?"
A1 = "I'm doing great. How can I help you today?"
U2 = "What is in this picture?"
WITH_IMAGE = [
    {"role": "system", "content": S},
    {"role": "user", "content": U1},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": U2, "images": [b"\x89PNG..."]},
]


def bundled(name: str) -> Template:
    return Template.parse((TEMPLATES / name).read_text())


def test_fixtures_are_all_there():
    index = json.loads((TEMPLATES / "index.json").read_text())
    assert {f"{e['name']}.gotmpl" for e in index} <= set(NAMES)
    assert len(NAMES) == 20


@pytest.mark.parametrize("name", NAMES)
def test_every_bundled_template_renders_a_conversation_with_an_image(name):
    r = render_chat(bundled(name), WITH_IMAGE)
    assert r.images == [b"\x89PNG..."]
    # every one of them shows the system text, both user turns in order, the image tag before its text
    assert r.prompt.index(S) < r.prompt.index(U1) < r.prompt.index(A1) < r.prompt.index("[img-0]" + U2)


# -- the bundled templates against Ollama's expected outputs (template_test.go's TestTemplate) ----

CASES = {
    "user": [{"role": "user", "content": U1}],
    "user-assistant-user": [
        {"role": "user", "content": U1},
        {"role": "assistant", "content": A1},
        {"role": "user", "content": "I'd like to show off how chat templating works!"},
    ],
}
CASES["system-user-assistant-user"] = [{"role": "system", "content": S}, *CASES["user-assistant-user"]]
#: Ollama's test strips one trailing space from these templates' output before comparing.
TRAILING_SPACE = {"chatqa.gotmpl", "llama2-chat.gotmpl", "mistral-instruct.gotmpl", "openchat.gotmpl", "vicuna.gotmpl"}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_bundled_templates_match_ollamas_expected_output(name, case):
    got = chat_prompt(bundled(name), CASES[case])
    if name in TRAILING_SPACE and got.endswith(" "):
        got = got[:-1]
    assert got == (TEMPLATES / "testdata" / name / case).read_text()


# -- by hand: what reading the templates says they must write ------------------------------------

BY_HAND = {
    "llama3-instruct.gotmpl": (
        f"<|start_header_id|>system<|end_header_id|>\n\n{S}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{U1}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{A1}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n[img-0]{U2}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "chatml.gotmpl": (
        f"<|im_start|>system\n{S}<|im_end|>\n<|im_start|>user\n{U1}<|im_end|>\n"
        f"<|im_start|>assistant\n{A1}<|im_end|>\n<|im_start|>user\n[img-0]{U2}<|im_end|>\n<|im_start|>assistant\n"
    ),
    "mistral-instruct.gotmpl": f"[INST] {S}\n\n{U1}[/INST] {A1}</s>[INST] [img-0]{U2}[/INST]",
    "vicuna.gotmpl": f"{S}\n\nUSER: {U1}\nASSISTANT: {A1}</s>\nUSER: [img-0]{U2}\nASSISTANT:",
    "gemma-instruct.gotmpl": (
        f"<start_of_turn>user\n{S}\n{U1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
        f"<start_of_turn>user\n[img-0]{U2}<end_of_turn>\n<start_of_turn>model\n"
    ),
    "gemma3-instruct.gotmpl": (
        f"<start_of_turn>user\n{S}\n\n{U1}<end_of_turn>\n<start_of_turn>model\n{A1}<end_of_turn>\n"
        f"<start_of_turn>user\n[img-0]{U2}<end_of_turn>\n<start_of_turn>model\n\n"  # the file ends in a newline
    ),
    "alfred.gotmpl": (
        f"<start_system>{S}<end_message><start_user>{U1}<end_message><start_assistant>{A1}<end_message>"
        f"<start_user>[img-0]{U2}<end_message><start_assistant>"
    ),
    "phi-3.gotmpl": f"<|system|>\n{S}<|end|>\n<|user|>\n{U1}<|end|>\n<|assistant|>\n{A1}<|end|>\n<|user|>\n[img-0]{U2}<|end|>\n<|assistant|>\n",
}


@pytest.mark.parametrize("name", sorted(BY_HAND))
def test_well_known_templates_exactly(name):
    assert chat_prompt(bundled(name), WITH_IMAGE) == BY_HAND[name]


def test_image_marker_is_the_engines_choice():
    got = chat_prompt(bundled("chatml.gotmpl"), WITH_IMAGE, image_marker="<__media__>")
    assert f"<|im_start|>user\n<__media__>{U2}<|im_end|>" in got


def test_model_system_goes_first_unless_the_request_has_one():
    t = bundled("chatml.gotmpl")
    assert chat_prompt(t, CASES["user"], system="SYS").startswith("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user")
    assert "SYS" not in chat_prompt(t, WITH_IMAGE, system="SYS")


# -- template_test.go: TestExecuteWithMessages, TestExecuteWithSuffix, TestCollate, tools ---------

MISTRAL_LEGACY = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
MISTRAL_MESSAGES = (
    "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n"
    '{{- if eq .Role "user" }}{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n{{- end }}'
)
CHATML_LEGACY = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
    "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
HELLO = [{"role": "user", "content": "Hello friend!"}, {"role": "assistant", "content": "Hello human!"},
         {"role": "user", "content": "What is your name?"}]  # fmt: skip
WITH_SYSTEM = [{"role": "system", "content": "You are a helpful assistant!"}, *HELLO]


@pytest.mark.parametrize(
    ("templates", "messages", "expected"),
    [
        ([MISTRAL_LEGACY, MISTRAL_LEGACY + "{{ .Response }}", MISTRAL_MESSAGES], HELLO,
         "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "),
        ([MISTRAL_LEGACY, MISTRAL_LEGACY + "{{ .Response }}", MISTRAL_MESSAGES], WITH_SYSTEM,
         "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "),
        (["[INST] {{ .Prompt }}[/INST] ", "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
          ('\n{{- range $i, $m := .Messages }}\n{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] '
           '{{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n{{- end }}')],
         [*HELLO, {"role": "assistant", "content": "My name is Ollama and I"}],
         "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"),
        ([CHATML_LEGACY, "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"],
         WITH_SYSTEM,
         ("<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
          "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n")),
    ],
    ids=["mistral", "mistral system", "mistral assistant", "chatml"],
)  # fmt: skip
def test_legacy_and_message_templates_agree(templates, messages, expected):
    for text in templates:
        assert execute(Template.parse(text), messages=messages) == expected, text


def test_suffix():
    t = Template.parse("{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}")
    assert execute(t, messages=[{"role": "user", "content": "hello"}]) == "hello"
    assert generate_prompt(t, "def add(", suffix="return x") == "<PRE> def add( <SUF>return x <MID>"


def test_date_functions_in_a_message_template():
    t = Template.parse("{{- range .Messages }}{{ .Content }}{{ end }} Today is {{ currentDate }}")
    assert chat_prompt(t, [{"role": "user", "content": "Hello"}]) == f"Hello Today is {datetime.date.today().isoformat()}"


@pytest.mark.parametrize(
    ("messages", "expected", "system"),
    [
        ([{"role": "user", "content": "Hello"}, {"role": "user", "content": "How are you?"}],
         [("user", "Hello\n\nHow are you?", "")], ""),
        ([{"role": "tool", "content": "sunny", "tool_name": "get_weather"}, {"role": "tool", "content": "72F", "tool_name": "get_temperature"}],
         [("tool", "sunny", "get_weather"), ("tool", "72F", "get_temperature")], ""),
        ([{"role": "system", "content": "You are helpful"}, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"},
          {"role": "user", "content": "What's the weather?"}, {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
          {"role": "system", "content": "Be brief"}],
         [("system", "You are helpful", ""), ("user", "Hello", ""), ("assistant", "Hi there!", ""),
          ("user", "What's the weather?", ""), ("tool", "sunny", "get_weather"), ("system", "Be brief", "")], "You are helpful\n\nBe brief"),
    ],
)  # fmt: skip
def test_collate(messages, expected, system):
    got_system, got = collate(messages)
    assert got_system == system
    assert [(m["role"], m["content"], m.get("tool_name", "")) for m in got] == expected


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {
    "type": "object", "required": ["location"], "properties": {"location": {"type": "string", "description": "City name"}}}}}  # fmt: skip
CALL = [{"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"unit": "celsius", "location": "Tokyo"}}}]}]


def test_tool_call_arguments_print_as_json_and_range_as_a_map():
    t = Template.parse("{{- range .Messages }}{{- range .ToolCalls }}{{ .Function.Arguments }}|"
                       "{{- range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }};{{- end }}{{- end }}{{- end }}")  # fmt: skip
    assert chat_prompt(t, CALL) == '{"location":"Tokyo","unit":"celsius"}|location=Tokyo;unit=celsius;'


def test_absent_arguments_are_nil_as_in_go():
    t = Template.parse("{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments }}|{{ json .Function.Arguments }}{{ end }}{{ end }}")
    assert chat_prompt(t, [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]) == "{}|null"
    assert chat_prompt(t, [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]) == "{}|{}"


def test_tool_properties_print_as_json_and_range():
    t = Template.parse("{{- range .Messages }}{{- end }}{{- range .Tools }}{{ .Function.Parameters.Properties }}|"
                       "{{- range $name, $prop := .Function.Parameters.Properties }}{{ $name }}:{{ $prop.Type }};{{- end }}{{- end }}")  # fmt: skip
    got = chat_prompt(t, [{"role": "user", "content": "test"}], tools=[WEATHER_TOOL])
    assert got == '{"location":{"type":"string","description":"City name"}}|location:string;'


def test_tools_print_as_ollamas_json():
    t = Template.parse("{{ range .Messages }}{{ end }}{{ .Tools }}|{{ json .Tools }}|{{ range .Tools }}{{ . }}{{ end }}|{{ if .Tools }}y{{ end }}")
    one = ('{"type":"function","function":{"name":"get_weather","description":"Get weather","parameters":'
           '{"type":"object","required":["location"],"properties":{"location":{"type":"string","description":"City name"}}}}}')  # fmt: skip
    assert chat_prompt(t, CASES["user"], tools=[WEATHER_TOOL]) == f"[{one}]|[{one}]|{one}|y"
    assert chat_prompt(t, CASES["user"]) == "null|null||"


def test_command_r_renders_tools_and_tool_calls():
    got = chat_prompt(bundled("command-r.gotmpl"), [{"role": "user", "content": "Weather in Tokyo?"}, *CALL,
                                                  {"role": "tool", "content": "sunny"}], tools=[WEATHER_TOOL])  # fmt: skip
    assert "def get_weather(location: string, ) -> List[Dict]:\n    '''Get weather\n\n    Args:\n        location (string): City name\n    '''" in got
    assert '"tool_name": "get_weather",\n        "parameters": {"location":"Tokyo","unit":"celsius"}' in got
    assert "<|SYSTEM_TOKEN|><results>\nconsole_output: sunny\n</results><|END_OF_TURN_TOKEN|>" in got


def test_think_values():
    t = Template.parse("{{ range .Messages }}{{ end }}{{ .Think }}/{{ .ThinkLevel }}/{{ .IsThinkSet }}")
    assert [chat_prompt(t, CASES["user"], think=v) for v in (None, False, True, "high")] == [
        "false//false", "false//true", "true/medium/true", "true/high/true"]  # fmt: skip


# -- prompt_test.go: TestChatPrompt (a legacy template, a word-counting tokenizer) ---------------

LEGACY = "\n{{- if .System }}{{ .System }} {{ end }}\n{{- if .Prompt }}{{ .Prompt }} {{ end }}\n{{- if .Response }}{{ .Response }} {{ end }}"
H, W, A = "You're a test, Harry!", "I-I'm a what?", "A test. And a thumping good one at that, I'd wager."


def u(content="", *images):
    return {"role": "user", "content": content, "images": list(images)}


ASSISTANT = {"role": "assistant", "content": W}


@pytest.mark.parametrize(
    ("limit", "messages", "prompt", "images"),
    [
        (64, [u(H), ASSISTANT, u(A)], f"{H} {W} {A} ", []),
        (1, [u(H), ASSISTANT, u(A)], f"{A} ", []),
        (64, [u(H), ASSISTANT, u(A, b"something")], f"[img-0]{A} ", [b"something"]),
        (64, [u(H, b"something"), ASSISTANT, u(A, b"somethingelse")], f"[img-0]{A} ", [b"somethingelse"]),
        (2048, [u(H, b"something"), ASSISTANT, u(A, b"somethingelse")], f"[img-0]{H} {W} [img-1]{A} ", [b"something", b"somethingelse"]),
        (2048, [u(H + " [img]", b"something"), ASSISTANT, u(A, b"somethingelse")], f"{H} [img-0] {W} [img-1]{A} ", [b"something", b"somethingelse"]),
        (2048, [u(H), u("", b"something"), u("", b"somethingelse"), ASSISTANT, u(A)],
         f"{H}\n\n[img-0]\n\n[img-1] {W} {A} ", [b"something", b"somethingelse"]),
        (1024, [u(H), u("", b"something"), u("", b"somethingelse"), ASSISTANT, u(A)], f"[img-0] {W} {A} ", [b"somethingelse"]),
        (2048, [{"role": "system", "content": "You are the Test Who Lived."}, u(H), ASSISTANT, u(A)],
         f"You are the Test Who Lived. {H} {W} {A} ", []),
        (2048, [u(H), ASSISTANT, {"role": "system", "content": "You are the Test Who Lived."}, u(A)],
         f"{H} {W} You are the Test Who Lived. {A} ", []),
        (2048, [u("Compare these two pictures of hotdogs", b"one hotdog", b"two hotdogs")],
         "[img-0][img-1]Compare these two pictures of hotdogs ", [b"one hotdog", b"two hotdogs"]),
    ],
)  # fmt: skip
def test_chat_prompt_truncation_and_images(limit, messages, prompt, images):
    r = render_chat(LEGACY, messages, count_tokens=lambda s: len(s.split()), num_ctx=limit)
    assert (r.prompt, r.images) == (prompt, images)


def test_no_truncation_without_a_tokenizer():
    assert chat_prompt(LEGACY, [u(H), ASSISTANT, u(A)], num_ctx=10) == f"{H} {W} {A} "


def test_truncation_keeps_earlier_system_messages():
    msgs = [{"role": "system", "content": "Sys."}, u("one two three"), ASSISTANT, u("last")]
    assert chat_prompt(LEGACY, msgs, count_tokens=lambda s: len(s.split()), num_ctx=3) == "Sys. last "


def test_tag_images_leaves_messages_without_images_alone():
    tagged, images = tag_images([u("a"), u("b [img] c", "I")])
    assert [m["content"] for m in tagged] == ["a", "b [img-0] c"] and images == ["I"]


# -- /api/generate -------------------------------------------------------------------------------


def test_generate_builds_a_chat_of_system_and_user():
    t = bundled("chatml.gotmpl")
    r = render_generate(t, "Describe it.", "Be terse.", images=[b"img"])
    assert r.prompt == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n[img-0]Describe it.<|im_end|>\n<|im_start|>assistant\n"
    assert r.images == [b"img"]


def test_generate_with_a_legacy_template_and_history():
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert generate_prompt(LEGACY, "Next?", history=history) == "Hi Hello Next? "


def test_generate_with_a_template_from_the_request_executes_it_directly():
    # as Ollama: no image tags when the request brought its own template
    r = render_generate("{{ range .Messages }}{{ .Role }}:{{ .Content }}({{ len .Images }}) {{ end }}", "hi", images=[b"i"], request_template=True)
    assert r.prompt == "user:hi(1) "
