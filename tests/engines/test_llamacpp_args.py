"""llama-server's command line is built from typed fields only: no pass-through from a manifest
(no llama-server binary needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgscribe.engines.llamacpp.runner import LlamaCppSettings, server_args
from imgscribe.errors import EngineFailed
from imgscribe.types import ModelInfo, ModelManifest

ATTACK = ["--log-file", "/tmp/imgscribe-owned.log", "-m", "/other.gguf"]


def _manifest(tmp_path: Path, parameters=None, **settings) -> ModelManifest:
    model, projector = tmp_path / "m.gguf", tmp_path / "p.gguf"
    model.write_bytes(b"GGUF")
    projector.write_bytes(b"GGUF")
    settings.setdefault("chat_template", "{{ messages }}")  # given: the GGUF is not read
    return ModelManifest(name="tiny:latest", engine="llamacpp", files={"model": str(model), "projector": str(projector)},
                         parameters=parameters or {}, engine_settings=settings,
                         info=ModelInfo(name="tiny:latest", engine="llamacpp"))  # fmt: skip


def test_the_command_line_is_exactly_the_typed_fields(tmp_path):
    params = {"num_ctx": 2048, "num_thread": 3, "num_gpu": 0, "image_min_tokens": 64, "image_max_tokens": 256.0,
              "temperature": 0.1, "stop": ["x"]}  # fmt: skip
    manifest = _manifest(tmp_path, params, num_parallel=2, load_timeout=5, ignore_eos=True)
    args = server_args(manifest, 2, tmp_path / "logs")
    assert args == [
        "-m", str(tmp_path / "m.gguf"), "-c", "4096", "-np", "2", "--jinja", "--metrics", "--no-webui",
        "--alias", "tiny:latest", "--mmproj", str(tmp_path / "p.gguf"), "-t", "3", "-ngl", "0",
        "--image-min-tokens", "64", "--image-max-tokens", "256",
        "--chat-template-file", str(tmp_path / "logs" / "tiny_latest.jinja"),
    ]  # fmt: skip
    assert (tmp_path / "logs" / "tiny_latest.jinja").read_text() == "{{ messages }}"


def test_nothing_from_the_manifest_is_passed_through(tmp_path):
    """Even a parameters dict changed after validation, or a setting the engine does not know, never
    reaches the command line."""
    manifest = _manifest(tmp_path)
    manifest.parameters["server_args"] = ATTACK  # past the manifest's own check
    manifest.parameters["request_args"] = {"n_probs": 5}
    args = server_args(manifest, 1, tmp_path / "logs")
    assert not set(ATTACK) & set(args[2:]) and "--log-file" not in args
    assert args.count("-m") == 1

    smuggled = _manifest(tmp_path, server_args=ATTACK)
    with pytest.raises(EngineFailed, match="unknown llamacpp setting 'server_args'"):
        server_args(smuggled, 1, tmp_path / "logs")
    with pytest.raises(EngineFailed, match="unknown llamacpp setting 'request_args'"):
        server_args(_manifest(tmp_path, request_args={"ignore_eos": True}), 1, tmp_path / "logs")


@pytest.mark.parametrize("value", ["--log-file", "8; rm -rf /", True, 2.5])
def test_integer_options_are_integers_on_the_command_line(tmp_path, value):
    manifest = _manifest(tmp_path)
    manifest.parameters["num_thread"] = value  # past the manifest's own check
    with pytest.raises(EngineFailed, match="'num_thread' must be an integer"):
        server_args(manifest, 1, tmp_path / "logs")


def test_the_settings_are_typed():
    assert set(LlamaCppSettings.model_fields) == {"num_parallel", "chat_template", "load_timeout", "ignore_eos", "cache_prompt"}
    with pytest.raises(ValueError):
        LlamaCppSettings.model_validate({"ignore_eos": "maybe"})
    with pytest.raises(ValueError):
        LlamaCppSettings.model_validate({"num_parallel": -1})
