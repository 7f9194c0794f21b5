"""Bad input gets one clear line and the right exit code: never a traceback, a hang, or lost work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from imgscribe.cli import main
from imgscribe.store import Store
from imgscribe.types import ModelInfo, ModelManifest

def cli(capsys, *args: str) -> tuple[int, str]:
    """Run the command in this process; its exit code and stderr."""
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def run(cmd, *args, env, stdin=None, timeout=120, **kw):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, env=env, input=stdin, timeout=timeout, **kw)


def assert_clear(code: int, err: str, expected: int, *words: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err and "unexpected" not in err, err
    for word in words:
        assert word in err, err


@pytest.fixture
def echo() -> str:
    """An instant, deterministic model in the test's store."""
    Store().create("echo-test", ModelManifest(
        name="echo-test", engine="echo",
        info=ModelInfo(name="echo-test", engine="echo", capabilities=["completion", "vision"]),
    ))  # fmt: skip
    return "echo-test"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), "red").save(path)
    return path


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00\x80 not text")
    (folder / "bad.yaml").write_text("a: [unclosed")
    (folder / "garbage.jsonl").write_bytes(b"\x00\x01 not json\nnor this\n")
    (folder / "captions_val.json").write_text('{"images": []}')  # COCO without "annotations"
    return folder


# -- options and files given to run / describe ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "{folder}/binary.json"], ["--format", "not UTF-8"]),
        (["--format", "{folder}/missing.json"], ["--format", "no such file", "missing.json"]),
        (["--format", "{folder}"], ["--format", "is a folder"]),
        (["-o", "temprature=0.2"], ["--option", "unknown option 'temprature'", "temperature"]),
        (["-o", "temperature=hot"], ["--option", "temperature"]),
        (["-o", "num_ctx=-5"], ["--option", 'option "num_ctx"', "greater than or equal to 0", "-5"]),
        (["-o", "top_p=1.5"], ["--option", 'option "top_p"', "less than or equal to 1"]),
        (["-o", "nokey"], ["--option expects KEY=VALUE"]),
    ],
)
def test_run_bad_options_are_one_line(capsys, photo, files, args, words):
    args = [a.replace("{folder}", str(files)) for a in args]
    code, err = cli(capsys, "run", "builtin", "hi", "--image", photo, *args)
    assert_clear(code, err, 1, *words)


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (["--prompts", "{folder}/binary.json"], 1, ["--prompts", "not UTF-8"]),
        (["--prompts", "{folder}/bad.yaml"], 1, ["--prompts", "bad.yaml", "line 1, column 13"]),
        (["--sidecar", "nofield"], 1, ["--sidecar", "no field 'nofield'"]),
        (["--sidecar", "{oops"], 1, ["--sidecar", "needs at least one {field}"]),
        (["--xmp", "sidecar", "--xmp-keywords", "nope"], 1, ["--xmp-keywords", "no field 'nope'"]),
        (["--out", "{folder}"], 1, ["--out", "is a folder"]),
        (["--out", "{folder}/bad.yaml/x.jsonl"], 1, ["--out", "is a file, not a folder"]),
        (["--manifest", "{folder}/bad.yaml/m.jsonl"], 1, ["--manifest", "is a file, not a folder"]),
        (["--ray", "--ray-gpus", "-1"], 2, ["--ray-gpus"]),
        (["--ray", "--ray-cpus", "-2"], 2, ["--ray-cpus"]),
    ],
)
def test_describe_bad_options_are_refused_before_any_work(capsys, photo, files, args, expected, words):
    args = [a.replace("{folder}", str(files)) for a in args]
    code, err = cli(capsys, "describe", photo, *args)
    assert_clear(code, err, expected, *words)
    assert not photo.with_suffix(".txt").exists() and not (photo.parent / ".imgscribe-manifest.jsonl").exists()


def test_describe_leaves_a_file_that_is_not_a_manifest_alone(imgscribe_cmd, cli_env, echo, photo, files):
    garbage = files / "garbage.jsonl"
    before = garbage.read_bytes()
    result = run(imgscribe_cmd, "describe", photo, "-m", echo, "--out", garbage, env=cli_env, text=True)
    assert_clear(result.returncode, result.stderr, 1, "garbage.jsonl", "not an imgscribe manifest")
    assert garbage.read_bytes() == before


# -- stdin -------------------------------------------------------------------------------------------


def test_describe_stdin_list_with_undecodable_bytes(imgscribe_cmd, cli_env, echo, photo, tmp_path):
    listing = f"{photo}\n".encode() + b"\xff\xfe-not-a-file.jpg\n"
    out = tmp_path / "out.jsonl"
    result = run(imgscribe_cmd, "describe", "-", "-m", echo, "--out", out, env=cli_env, stdin=listing, text=False)
    err = result.stderr.decode()
    assert_clear(result.returncode, err, 1, "no such file (listed in -)")  # one bad line, not the run
    records = {r["path"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert records[str(photo)]["response"] and records["\\xff\\xfe-not-a-file.jpg"]["error"]


def test_describe_a_folder_with_a_file_name_that_is_not_utf8(imgscribe_cmd, cli_env, echo, photo, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "ok.png").write_bytes(photo.read_bytes())
    Path(os.fsdecode(bytes(folder) + b"/b\xff.png")).write_bytes(photo.read_bytes())
    out = tmp_path / "out.jsonl"
    result = run(imgscribe_cmd, "describe", folder, "-m", echo, "-p", "Describe {filename}", "--out", out,
                 env=cli_env, text=True)  # fmt: skip
    assert_clear(result.returncode, result.stderr, 0)
    paths = sorted(Path(r["path"]).name for r in map(json.loads, out.read_text(encoding="utf-8").splitlines()))
    assert paths == ["b\\xff.png", "ok.png"]


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (["describe", "-"], 1, ["stdin is closed"]),
        (["run", "builtin"], 2, ["stdin is closed", "PROMPT"]),
    ],
)
def test_closed_stdin(imgscribe_cmd, cli_env, args, expected, words):
    result = subprocess.run(["bash", "-c", 'exec "$@" <&-', "sh", *imgscribe_cmd, *args],
                            capture_output=True, text=True, env=cli_env, timeout=120)  # fmt: skip
    assert_clear(result.returncode, result.stderr, expected, *words)


# -- recommend, eval, convert, create, hosts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ram", "nan", "--vram", "0"], ["--ram", "nan"]),
        (["--ram", "inf", "--vram", "0"], ["--ram", "inf"]),
        (["--ram", "8", "--vram", "nan"], ["--vram", "nan"]),
        (["--ram", "8", "--vram", "0", "--ctx", "0"], ["--ctx"]),
    ],
)
def test_recommend_refuses_numbers_that_are_not_sizes(capsys, args, words):
    code, err = cli(capsys, "recommend", *args)
    assert_clear(code, err, 2, *words)


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (["--dataset", "docs", "--limit", "0"], 2, ["--limit"]),
        (["--dataset", "docs", "--out", "{folder}/bad.yaml"], 2, ["--out", "is a file"]),
        (["--dataset", "docs", "--images", "{folder}/nowhere"], 2, ["--images", "no such folder"]),
        (["--dataset", "coco:{folder}/captions_val.json"], 1, ["captions_val.json", "not a coco data set",
                                                               "annotations"]),
        (["--dataset", "{folder}/binary.json"], 1, ["binary.json", "data set"]),
    ],
)
def test_eval_bad_arguments(capsys, files, tmp_path, args, expected, words):
    args = [a.replace("{folder}", str(files)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "results")]
    code, err = cli(capsys, "eval", "--models", "builtin", *args)
    assert_clear(code, err, expected, *words)


@pytest.mark.parametrize(
    ("args", "expected", "words"),
    [
        (["convert", "{folder}/nowhere"], 2, ["no such folder"]),
        (["convert", "{folder}"], 2, ["not a Hugging Face checkpoint folder"]),
        (["create", "../x", "--remote", "http://127.0.0.1:9"], 1, ["invalid model name '../x'"]),
        (["create", "mine", "--remote", "not a url"], 1, ["invalid remote URL", "no spaces"]),
        (["run", "builtin", "hi", "--host", "http://[::bad"], 1, ["invalid address", "[::bad"]),
    ],
)
def test_bad_paths_names_and_addresses(capsys, files, args, expected, words):
    args = [a.replace("{folder}", str(files)) for a in args]
    code, err = cli(capsys, *args)
    assert_clear(code, err, expected, *words)
    assert "converting" not in err  # refused before starting


# -- Ctrl-C --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_in_describe_exits_130_keeps_rows_and_resumes(imgscribe_cmd, cli_env, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        Image.new("RGB", (64 + i, 48), (i * 5, 90, 200)).save(folder / f"img{i:02}.png")
    out = tmp_path / "out.jsonl"
    cmd = [*imgscribe_cmd, "describe", str(folder), "--out", str(out)]
    proc = subprocess.Popen(cmd, env=cli_env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert_clear(proc.returncode, err, 130, "Interrupted", "run the same command again to resume")
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) >= 3 and all(r["response"] for r in kept)

    again = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=240)
    assert_clear(again.returncode, again.stderr, 0, f"{len(kept)} skipped (done before)")
    assert sorted(r["path"] for r in map(json.loads, out.read_text().splitlines())) == sorted(
        str(p) for p in folder.iterdir()
    )

