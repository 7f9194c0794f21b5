"""Modelfiles: Ollama's cases (parser/parser_test.go) re-expressed, errors naming their line, and
``to_modelfile`` read back by the parser."""

from __future__ import annotations

import pytest

from imgscribe.errors import InvalidRequest
from imgscribe.store.modelfile import (
    apply,
    manifest_for_files,
    parse_commands,
    parse_modelfile,
    read_modelfile,
    to_modelfile,
)
from imgscribe.types import ModelInfo, ModelManifest

from .fake_remotes import tiny_model_gguf, tiny_projector_gguf

LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)


def commands(text: str) -> list[tuple[str, str, str]]:
    return [(c.name, c.key, c.value) for c in parse_commands(text)]


def error(text: str) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_modelfile(text)
    return info.value.message


def test_a_whole_file():
    text = f'\nFROM model1\nLICENSE MIT\nPARAMETER num_ctx 2048\nPARAMETER seed 7\nTEMPLATE """{LLAMA3}"""    \n'
    assert commands(text) == [("from", "", "model1"), ("license", "", "MIT"), ("parameter", "num_ctx", "2048"),
                              ("parameter", "seed", "7"), ("template", "", LLAMA3)]  # fmt: skip
    mf = parse_modelfile(text)
    assert mf.model == "model1" and mf.template == LLAMA3 and mf.parameters == {"num_ctx": 2048, "seed": 7}


def test_spaces_are_trimmed_outside_quotes_and_kept_inside():
    text = f'FROM "     model 1"\nLICENSE "MIT       "\nPARAMETER seed        1\nTEMPLATE """   {LLAMA3}   """    \n'
    assert commands(text) == [("from", "", "     model 1"), ("license", "", "MIT       "), ("parameter", "seed", "1"),
                              ("template", "", f"   {LLAMA3}   ")]  # fmt: skip


@pytest.mark.parametrize("text, value", [
    ('FROM "FOO  BAR  "', "FOO  BAR  "),
    ("FROM     FOOO BAR    ", "FOOO BAR"),
    ("FROM /what/is/the path ", "/what/is/the path"),
    ("FROM llama3:latest", "llama3:latest"),
    ("FROM llama3:7b-instruct-q4_K_M", "llama3:7b-instruct-q4_K_M"),
    ("from llava", "llava"),
    ("From\tllava", "llava"),
])  # fmt: skip
def test_from(text, value):
    assert commands(text) == [("from", "", value)]


def test_from_may_come_after_other_instructions():
    assert commands("PARAMETER seed 1\nFROM foo") == [("parameter", "seed", "1"), ("from", "", "foo")]
    assert parse_modelfile("PARAMETER seed 1\nFROM foo").model == "foo"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "PARAMETER seed 1"])
def test_no_from_is_refused(text):
    assert "no FROM line" in error(text)


def test_messages():
    text = ("FROM foo\nMESSAGE system You are a file parser. Always parse things.\nMESSAGE user Hey there!\n"
            "MESSAGE assistant Hello, I want to parse all the things!")  # fmt: skip
    assert parse_modelfile(text).messages == [
        {"role": "system", "content": "You are a file parser. Always parse things."},
        {"role": "user", "content": "Hey there!"},
        {"role": "assistant", "content": "Hello, I want to parse all the things!"},
    ]
    multi = 'FROM foo\nMESSAGE system """\nYou are a multiline file parser. Always parse things.\n"""\n\t\t\t'
    assert parse_modelfile(multi).messages == [
        {"role": "system", "content": "\nYou are a multiline file parser. Always parse things.\n"}
    ]


@pytest.mark.parametrize("text, line, words", [
    ("\nFROM foo\nMESSAGE badguy I'm a bad guy!\n", 3, "invalid MESSAGE role 'badguy'"),
    ("\nFROM foo\nMESSAGE system\n", 3, "MESSAGE needs a role and a text"),
    ("\nFROM foo\nMESSAGE system", 3, "MESSAGE needs a role and a text"),
    ("\nFROM foo\nMESSAGE tool hi\n", 3, "use system, user or assistant"),
    ("\nFROM foo\nPARAMETER num_ctx\n", 3, "PARAMETER needs a name and a value"),
    ("\nFROM foo\nBADCOMMAND param1 value1\n", 3, "unknown instruction 'BADCOMMAND'"),
    ("FROM foo\n\n\nSYSTEM\n", 4, "SYSTEM needs a value"),
    ('\nFROM foo\nSYSTEM """This is a multiline system.""\n', 3, "never closed"),
    ('\nFROM foo\nSYSTEM "\n\t\t\t', 3, "never closed"),
    ("FROM foo\nPARAMETER num_ctx lots", 2, "'lots' is not a whole number"),
    ("FROM foo\nPARAMETER temperature warm", 2, "'warm' is not a number"),
    ("FROM foo\nPARAMETER use_mmap maybe", 2, "'maybe' is not true or false"),
    ("FROM foo\nPARAMETER temperature -1", 2, "greater than or equal to 0"),
    ("FROM foo\nPARAMETER top_p 2", 2, "less than or equal to 1"),
    ("FROM foo\nPARAMETER num_ctx 1.5", 2, "not a whole number"),
    ("FROM foo\nPARAMETER server_args --log-file", 2, "unknown parameter 'server_args'"),
    ("FROM foo\nPARAMETER num_gqa 1", 2, "unknown parameter 'num_gqa'"),
    ("FROM foo\n# fine\nADAPTER ./lora.gguf", 3, "ADAPTER is not supported"),
    ("FROM foo\nFROM bar", 2, "only one FROM may name a model"),
    ("FROM ./missing.gguf", 1, "no such file or folder"),
])  # fmt: skip
def test_errors_name_their_line(text, line, words):
    message = error(text)
    assert message.startswith(f"Modelfile line {line}: "), message
    assert words in message, message


@pytest.mark.parametrize("value, expected", [
    ('"""\nThis is a\nmultiline system.\n"""', "\nThis is a\nmultiline system.\n"),
    ('"""\nThis is a\nmultiline system."""', "\nThis is a\nmultiline system."),
    ('"""This is a\nmultiline system."""', "This is a\nmultiline system."),
    ('"""This is a multiline system."""', "This is a multiline system."),
    ('"""\nThis is a multiline system with "quotes".\n"""', '\nThis is a multiline system with "quotes".\n'),
    ('""""""', ""),
    ('""', ""),
    ('"\'"', "'"),
    ('"""\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
    ('"two\nlines"', "two\nlines"),
    ("You are a bot. # not a comment", "You are a bot. # not a comment"),
])  # fmt: skip
def test_quoted_values(value, expected):
    assert parse_modelfile(f"FROM foo\nSYSTEM {value}\n\t\t\t").system == expected


def test_template_at_the_end_of_the_file():
    assert parse_modelfile('FROM foo\nTEMPLATE """\n{{ .Prompt }}\n"""').template == "\n{{ .Prompt }}\n"


@pytest.mark.parametrize("text, name, value", [
    ("numa true", "numa", True), ("num_ctx 1", "num_ctx", 1), ("num_batch 1", "num_batch", 1),
    ("num_gpu 1", "num_gpu", 1), ("main_gpu 1", "main_gpu", 1), ("use_mmap True", "use_mmap", True),
    ("use_mmap f", "use_mmap", False), ("num_thread 1", "num_thread", 1), ("num_keep 1", "num_keep", 1),
    ("seed 1", "seed", 1), ("num_predict -1", "num_predict", -1), ("top_k 1", "top_k", 1),
    ("top_p 1.0", "top_p", 1.0), ("min_p 0.05", "min_p", 0.05), ("typical_p 1.0", "typical_p", 1.0),
    ("repeat_last_n 1", "repeat_last_n", 1), ("temperature 1.0", "temperature", 1.0),
    ("repeat_penalty 1.0", "repeat_penalty", 1.0), ("presence_penalty 1.0", "presence_penalty", 1.0),
    ("frequency_penalty 1.0", "frequency_penalty", 1.0), ("penalize_newline true", "penalize_newline", True),
    ("mirostat 1", "mirostat", 1), ("mirostat_tau 1.0", "mirostat_tau", 1.0), ("tfs_z 1", "tfs_z", 1.0),
    ("image_max_tokens 256", "image_max_tokens", 256), ("stop <|im_end|>", "stop", ["<|im_end|>"]),
])  # fmt: skip
def test_every_parameter_is_typed(text, name, value):
    params = parse_modelfile(f"FROM foo\nPARAMETER {text}").parameters
    assert params == {name: value} and type(params[name]) is type(value)


def test_stop_accumulates_and_other_parameters_replace():
    text = 'FROM foo\nPARAMETER stop "<|im_end|>"\nparameter STOP "### User:"\nPARAMETER seed 1\nPARAMETER seed 2\n'
    assert parse_modelfile(text).parameters == {"stop": ["<|im_end|>", "### User:"], "seed": 2}


def test_comments_blank_lines_crlf_and_a_byte_order_mark():
    text = "\ufeff# a comment\r\n\r\n  # indented comment\r\nFROM foo\r\nSYSTEM hi there\r\n"
    mf = parse_modelfile(text)
    assert mf.model == "foo" and mf.system == "hi there"


def test_licenses_repeat_and_ollamas_own_instructions_are_noted():
    mf = parse_modelfile("FROM foo\nLICENSE MIT\nLICENSE \"\"\"Apache\n2.0\"\"\"\nRENDERER qwen3\nPARSER qwen3\n")
    assert mf.license == ["MIT", "Apache\n2.0"]
    assert len(mf.notes) == 2 and "line 5: RENDERER ignored" in mf.notes[0]


def test_relative_from_paths_resolve_against_the_modelfile_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(tiny_model_gguf())
    (folder / "mmproj.gguf").write_bytes(tiny_projector_gguf())
    (folder / "Modelfile").write_text("FROM ./mmproj.gguf\nFROM model.gguf\nSYSTEM be brief\n")
    monkeypatch.chdir(tmp_path)  # not the Modelfile's folder
    mf = read_modelfile(folder / "Modelfile")
    assert mf.model is None and mf.paths == [folder / "mmproj.gguf", folder / "model.gguf"]
    manifest, _ = manifest_for_files("tiny", mf.paths)  # the headers tell which is the projector
    assert manifest.files == {"model": str(folder / "model.gguf"), "projector": str(folder / "mmproj.gguf")}
    assert "vision" in manifest.info.capabilities


def test_files_that_make_no_model(tmp_path):
    for name, data in (("a.gguf", tiny_projector_gguf()), ("b.gguf", tiny_projector_gguf(seed=3)),
                       ("c.gguf", tiny_model_gguf()), ("d.gguf", tiny_model_gguf(seed=4)), ("e.bin", b"nope")):  # fmt: skip
        (tmp_path / name).write_bytes(data)
    with pytest.raises(InvalidRequest, match="no model GGUF"):
        manifest_for_files("x", [tmp_path / "a.gguf"])
    with pytest.raises(InvalidRequest, match="several projectors"):
        manifest_for_files("x", [tmp_path / "a.gguf", tmp_path / "b.gguf"])
    with pytest.raises(InvalidRequest, match="two model GGUFs"):
        manifest_for_files("x", [tmp_path / "c.gguf", tmp_path / "d.gguf"])
    with pytest.raises(InvalidRequest, match="e.bin is not a GGUF"):
        manifest_for_files("x", [tmp_path / "e.bin"])
    assert "at most two FROM files" in error(f"FROM {tmp_path}/a.gguf\nFROM {tmp_path}/c.gguf\nFROM {tmp_path}/d.gguf")
    assert "both a model and files" in error(f"FROM llava\nFROM {tmp_path}/c.gguf")


def _manifest(**fields) -> ModelManifest:
    info = ModelInfo(name="mine:latest", engine="echo", license=fields.pop("license", ""))
    return ModelManifest(name="mine:latest", engine="echo", info=info, **fields)


@pytest.mark.parametrize("fields", [
    {},
    {"system": "You are terse.", "parameters": {"temperature": 0.0, "num_ctx": 4096, "use_mmap": False}},
    {"template": LLAMA3, "system": "  leading and trailing  ", "parameters": {"stop": ["<|eot_id|>", "a b", " x"]}},
    {"system": 'say "hi"', "template": '{{ .Prompt }}"', "license": "MIT\n\nfull text",
     "messages": [{"role": "user", "content": "Hi\nthere"}, {"role": "assistant", "content": '"quoted"'}]},
    {"system": "", "messages": [{"role": "system", "content": ""}]},
])  # fmt: skip
def test_to_modelfile_reads_back(fields):
    manifest = _manifest(**fields)
    text = to_modelfile(manifest)
    assert text.startswith("# Modelfile generated by") and "\nFROM mine:latest\n" in text
    back = parse_modelfile(text)
    assert back.model == "mine:latest"
    assert (back.system or "") == manifest.system and (back.template or "") == manifest.template
    assert back.parameters == manifest.parameters and back.messages == manifest.messages
    assert "\n".join(back.license) == manifest.info.license
    again = apply(_manifest(), **back.request())
    assert to_modelfile(again) == text  # the same model, written the same way


def test_to_modelfile_order_is_ollamas():
    text = to_modelfile(_manifest(system="s", template="t", parameters={"seed": 1}, license="MIT",
                                  messages=[{"role": "user", "content": "u"}]))  # fmt: skip
    body = [line.split()[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE"]


def test_apply_keeps_the_parents_parameters_and_files():
    parent = _manifest(parameters={"num_ctx": 2048, "seed": 1}, files={"model": "/m.gguf"}, system="old")
    child = apply(parent, system="new", parameters={"seed": 2})
    assert child.parameters == {"num_ctx": 2048, "seed": 2} and child.system == "new" and child.files == parent.files
    assert parent.system == "old"  # a copy


def test_a_template_that_does_not_parse_names_its_modelfile_line():
    from imgscribe.errors import InvalidRequest
    from imgscribe.store.modelfile import parse_modelfile

    with pytest.raises(InvalidRequest, match=r"Modelfile line 2: TEMPLATE: template line 1, column \d+"):
        parse_modelfile('FROM llava\nTEMPLATE """{{ .Prompt """\n')
