"""``imgscribe create NAME -f Modelfile`` and ``imgscribe show NAME --modelfile/--template/--system/--parameters``."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from server.conftest import (  # tests/server, a package beside this folder
    add_echo,
    live_server,
)

from imgscribe.cli import main
from imgscribe.scheduler import Scheduler
from imgscribe.store import Store
from imgscribe.store.import_gguf import manifest_for_gguf
from imgscribe.store.modelfile import parse_modelfile


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def tiny_gguf(metadata: dict, seed: int = 0) -> bytes:
    """A GGUF v3 header (str / u32 / bool metadata, no tensors) and some bytes."""
    body = b""
    for key, value in metadata.items():
        body += _string(key)
        if isinstance(value, bool):
            body += struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            body += struct.pack("<II", 4, value)
        else:
            body += struct.pack("<I", 8) + _string(str(value))
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body + hashlib.sha256(str(seed).encode()).digest() * 64


MODEL = tiny_gguf({"general.architecture": "llama", "general.name": "tiny", "llama.context_length": 2048})
PROJECTOR = tiny_gguf({"general.architecture": "clip", "clip.has_vision_encoder": True}, seed=1)


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "work"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "model.gguf").write_bytes(MODEL)
    (folder / "weights" / "mmproj.gguf").write_bytes(PROJECTOR)
    return folder


@pytest.fixture
def parent() -> Store:
    """A pulled-like llamacpp model whose files are store blobs: ``llava``."""
    store = Store()
    paths = []
    for i, data in enumerate((MODEL, PROJECTOR)):
        src = store.root.parent / f"in-{i}.gguf"
        src.write_bytes(data)
        paths.append(store.add_file(src))
    store.create("llava", manifest_for_gguf("llava", paths[0], paths[1]).model_copy(update={"parameters": {"num_ctx": 4096}}))
    return store


def test_create_from_gguf_files_relative_to_the_modelfile(folder, tmp_path, monkeypatch, capsys):
    (folder / "Modelfile").write_text(
        "# two FROM lines: the model and its projector, in any order\n"
        "FROM ./weights/mmproj.gguf\nFROM weights/model.gguf\n"
        'SYSTEM """You describe\nimages."""\nPARAMETER temperature 0.2\nPARAMETER stop "<end>"\nPARAMETER stop END\n'
        "MESSAGE user What is this?\nMESSAGE assistant A test.\nLICENSE MIT\n"
    )
    monkeypatch.chdir(tmp_path)  # not the Modelfile's folder
    assert main(["create", "mine", "-f", str(folder / "Modelfile")]) == 0
    assert "created mine:latest (llamacpp" in capsys.readouterr().out
    manifest = Store().resolve("mine")
    assert manifest.files == {"model": str(folder / "weights" / "model.gguf"),
                              "projector": str(folder / "weights" / "mmproj.gguf")}  # fmt: skip
    assert manifest.system == "You describe\nimages." and manifest.info.license == "MIT"
    assert manifest.parameters == {"temperature": 0.2, "stop": ["<end>", "END"]}
    assert manifest.messages == [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "A test."}]
    assert "vision" in manifest.info.capabilities


def test_a_derived_model_shares_its_parents_files(parent, tmp_path, capsys):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM llava\nSYSTEM Answer in one word.\nPARAMETER temperature 0\n")
    assert main(["create", "terse", "--file", str(modelfile)]) == 0
    child, base = parent.resolve("terse"), parent.resolve("llava")
    assert child.files == base.files and Path(child.files["model"]).parent == parent.root / "blobs"
    assert parent.stored("terse").digests == parent.stored("llava").digests
    assert child.system == "Answer in one word." and child.parameters == {"num_ctx": 4096, "temperature": 0.0}
    assert len(parent.blobs.all()) == 2  # nothing copied
    assert main(["rm", "llava"]) == 0  # the child keeps the blobs alive
    assert Path(parent.resolve("terse").files["model"]).is_file()


def test_show_prints_the_parts_and_the_modelfile_reads_back(parent, tmp_path, capsys):
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM llava\nTEMPLATE """{{ .System }}\n{{ .Prompt }}"""\nSYSTEM be brief\n'
                         "PARAMETER stop A\nPARAMETER stop B\nMESSAGE user hi\n")  # fmt: skip
    assert main(["create", "brief", "-f", str(modelfile)]) == 0
    capsys.readouterr()
    expected = {"--template": "{{ .System }}\n{{ .Prompt }}", "--system": "be brief"}
    for flag, text in expected.items():
        assert main(["show", "brief", flag]) == 0
        assert capsys.readouterr().out == text + "\n"
    assert main(["show", "brief", "--parameters"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["num_ctx", "4096"], ["stop", '"A"'], ["stop", '"B"']]
    assert main(["show", "brief", "--modelfile"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Modelfile generated by")
    back = parse_modelfile(printed)
    assert back.model == "brief:latest" and back.system == "be brief" and back.messages == [{"role": "user", "content": "hi"}]
    assert back.parameters == {"num_ctx": 4096, "stop": ["A", "B"]}
    (tmp_path / "Again").write_text(printed)
    assert main(["create", "again", "-f", str(tmp_path / "Again")]) == 0  # what show prints, create reads
    assert Store().resolve("again").template == "{{ .System }}\n{{ .Prompt }}"


@pytest.mark.parametrize("text, words", [
    ("FROM llava\nPARAMETER temprature 0\n", "Modelfile line 2: unknown parameter 'temprature'"),
    ("FROM llava\n\nADAPTER ./lora.gguf\n", "Modelfile line 3: ADAPTER is not supported"),
    ("SYSTEM hi\n", "no FROM line"),
    ("FROM ./nowhere.gguf\n", "Modelfile line 1: FROM ./nowhere.gguf: no such file or folder"),
    ("FROM no-such-model\n", "model 'no-such-model' not found"),
])  # fmt: skip
def test_mistakes_are_one_clear_line(parent, tmp_path, capsys, text, words):
    (tmp_path / "Modelfile").write_text(text)
    assert main(["create", "bad", "-f", str(tmp_path / "Modelfile")]) == 1
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not Store().exists("bad")


def test_flags_that_do_not_go_together(tmp_path, capsys):
    (tmp_path / "Modelfile").write_text("FROM llava\n")
    assert main(["create", "x", "-f", str(tmp_path / "Modelfile"), "--from", str(tmp_path)]) == 2
    assert main(["create", "x", "-f", str(tmp_path / "Modelfile"), "--mmproj", str(tmp_path)]) == 2
    assert main(["create", "x", "-f", str(tmp_path / "missing")]) == 1
    assert "cannot read the Modelfile" in capsys.readouterr().err
    assert main(["show", "builtin", "--system", "--template"]) == 2


def test_show_asks_a_running_server(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path / "server-models")
    add_echo(store, "llava")
    (tmp_path / "Modelfile").write_text("FROM llava\nSYSTEM from the server\nPARAMETER seed 3\n")
    with live_server(Scheduler(store)) as live:
        monkeypatch.setenv("IMGSCRIBE_MODELS", str(store.root))
        assert main(["create", "far", "-f", str(tmp_path / "Modelfile")]) == 0
        monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path / "elsewhere"))  # only the server has it now
        monkeypatch.setenv("IMGSCRIBE_HOST", live.host)
        capsys.readouterr()
        assert main(["show", "far", "--system"]) == 0
        assert capsys.readouterr().out == "from the server\n"
        assert main(["show", "far", "--modelfile"]) == 0
        assert parse_modelfile(capsys.readouterr().out).parameters == {"seed": 3}
        assert main(["show", "nope", "--modelfile"]) == 1
        assert "not found" in capsys.readouterr().err
