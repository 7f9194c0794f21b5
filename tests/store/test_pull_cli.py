"""``imgscribe pull``, ``rm`` and ``cp`` in-process, against the fake registry."""

from __future__ import annotations

import io

from rich.console import Console

import imgscribe.cli.pull as pull_cli  # registers pull, rm and cp on the app
from imgscribe.cli import main
from imgscribe.store import Store

from .fake_remotes import closed_port
from .test_pull_ollama import add_llava


def test_pull_cp_rm(registry, capsys):
    add_llava(registry)
    name = f"{registry.host}/library/llava:7b"
    assert main(["pull", name, "--insecure"]) == 0
    err = capsys.readouterr().err
    assert "pulling manifest" in err and "verifying sha256 digest" in err and err.rstrip().endswith("success")
    assert "checked the GGUF headers: llama-server runs this model as published" in err  # the inspection's verdict
    assert main(["cp", name, "mine"]) == 0
    assert capsys.readouterr().out.strip() == f"copied '{name}' to 'mine'"
    assert main(["rm", name]) == 0
    assert capsys.readouterr().out.strip() == f"deleted '{name}'"
    names = [i.name for i in Store().list()]
    assert "mine:latest" in names and name not in names
    assert Store().resolve("mine").engine == "llamacpp"


def test_pull_errors_are_one_line(capsys):
    assert main(["pull", f"127.0.0.1:{closed_port()}/library/llava:7b", "--insecure"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: cannot reach 127.0.0.1") and "builtin" in err and "Traceback" not in err
    assert main(["rm", "nothing-here"]) == 1
    assert "model 'nothing-here' not found" in capsys.readouterr().err


def test_progress_bars_on_a_terminal(registry):
    add_llava(registry)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    pull_cli.show_progress(Store().pull(f"{registry.host}/library/llava:7b", insecure=True), console)
    text = out.getvalue()
    assert "pulling manifest" in text and "success" in text
    assert "pulling " in text and "kB" in text  # a bar per blob with its size


def test_a_refusal_before_download_is_one_line(registry, capsys):
    from .fake_remotes import gguf

    registry.add_model("llama3.2-vision", "latest", [("model", gguf({"general.architecture": "mllama"}, 1000))])
    assert main(["pull", f"{registry.host}/library/llama3.2-vision", "--insecure"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "no llama.cpp build runs" in err and "Traceback" not in err
