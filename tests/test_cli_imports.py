"""The CLI starts light: ``import imgscribe.cli`` (every command registered) and the commands that
load no model import none of the heavy libraries, which load where they are used (issue 19).

A guard on the import list, never on a timing: each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "fastapi", "starlette", "uvicorn", "ray", "pyarrow", "llguidance", "gguf",
         "numpy", "httpx", "jsonschema", "onnxruntime")  # fmt: skip

_PROBE = """
import contextlib, io, json, sys
import imgscribe.cli as cli
cli._register()
argv = sys.argv[1:]
if argv:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(argv)
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _modules(tmp_path, *argv: str) -> tuple[int, set[str]]:
    env = {**os.environ, "IMGSCRIBE_MODELS": str(tmp_path / "models"), "IMGSCRIBE_HOST": "127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return found["code"], set(found["modules"])


def test_importing_the_cli_imports_no_heavy_module(tmp_path):
    code, modules = _modules(tmp_path)
    assert code == 0
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert not modules & {"rich", "pydantic", "PIL"}, "the commands' modules import Rich, pydantic and Pillow when they run"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list"], ["ps"], ["show", "builtin"],
                                  ["describe", "--help"], ["run", "--help"], ["serve", "--help"]])  # fmt: skip
def test_commands_that_load_no_model_import_no_heavy_module(tmp_path, argv):
    code, modules = _modules(tmp_path, *argv)
    assert code == 0
    assert not modules & set(HEAVY), f"{argv}: {sorted(modules & set(HEAVY))}"


def test_help_in_process_imports_no_heavy_module(tmp_path):
    """The Typer app's --help through CliRunner, in the same interpreter as the import."""
    probe = (
        "import sys, json; from typer.testing import CliRunner; import imgscribe.cli as cli; cli._register(); "
        "r = CliRunner().invoke(cli.app, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'describe' in r.output; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
