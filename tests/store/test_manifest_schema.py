"""Options and engine settings apart: a manifest's ``parameters`` hold options only, its engine's own
settings live in ``engine_settings`` (written by importers, never from a request), and manifests of
the older layout (everything in ``parameters``) are migrated once, without that migration becoming
a way to smuggle settings in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from imgscribe.engines.echo import ENGINE as ECHO
from imgscribe.engines.llamacpp.runner import server_args
from imgscribe.engines.remote import RemoteRunner
from imgscribe.errors import EngineFailed, InvalidRequest
from imgscribe.store import DamagedModel, Store
from imgscribe.store.import_gguf import manifest_for_gguf
from imgscribe.types import MANIFEST_SCHEMA, MODEL_PARAMETERS, ModelInfo, ModelManifest

from .fake_remotes import tiny_model_gguf, tiny_projector_gguf

ATTACK = ["--log-file", "/tmp/imgscribe-owned.log", "-m", "/other.gguf"]


def _info(name: str, engine: str = "echo") -> ModelInfo:
    return ModelInfo(name=name, engine=engine, capabilities=["completion", "vision"])


def _gguf_pair(tmp_path: Path) -> tuple[Path, Path]:
    model, projector = tmp_path / "model.gguf", tmp_path / "mmproj.gguf"
    model.write_bytes(tiny_model_gguf("tiny"))
    projector.write_bytes(tiny_projector_gguf())
    return model, projector


def _manifest_path(store: Store, name: str) -> Path:
    return store.manifests / "registry.ollama.ai" / "library" / name / "latest"


def _write_old(store: Store, name: str, model: dict) -> Path:
    """A manifest as the previous version wrote it: no schema_version, everything in parameters."""
    path = _manifest_path(store, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.imgscribe.manifest.v1+json",
                                "layers": [], "source": {}, "model": model}))  # fmt: skip
    return path


# -- the manifest itself ---------------------------------------------------------------------------


def test_the_allowed_set_is_ollamas_options_and_ours():
    for name in ("temperature", "num_ctx", "stop", "num_gpu", "num_thread", "mirostat", "tfs_z", "use_mmap",
                 "embedding_only", "image_min_tokens", "image_max_tokens"):  # fmt: skip
        assert name in MODEL_PARAMETERS
    for name in ("server_args", "request_args", "headers", "url", "api_key_env", "extra_body", "num_parallel",
                 "template", "chat_template", "load_timeout", "device", "tokens"):  # fmt: skip
        assert name not in MODEL_PARAMETERS


@pytest.mark.parametrize("key", ["server_args", "headers", "url", "api_key_env", "extra_body", "request_args",
                                 "num_parallel", "template"])  # fmt: skip
def test_a_manifest_refuses_anything_but_options_in_parameters(key):
    with pytest.raises(ValidationError, match=f"unknown parameter '{key}'"):
        ModelManifest(name="x", engine="llamacpp", info=_info("x", "llamacpp"), parameters={key: ATTACK})


@pytest.mark.parametrize(("parameters", "message"), [
    ({"temperature": -1}, 'option "temperature"'),
    ({"stop": "END"}, 'option "stop"'),
    ({"num_gpu": "all"}, 'option "num_gpu"'),
    ({"image_max_tokens": "--log-file"}, 'option "image_max_tokens"'),
    ({"use_mmap": "maybe"}, 'option "use_mmap"'),
])  # fmt: skip
def test_option_values_are_type_and_range_checked(parameters, message):
    with pytest.raises(ValidationError, match=message):
        ModelManifest(name="x", engine="echo", info=_info("x"), parameters=parameters)


def test_the_store_refuses_to_write_settings_slipped_into_parameters(tmp_path):
    """The dict can be changed after the manifest was built: the store checks again before writing."""
    store = Store(tmp_path / "models")
    manifest = ModelManifest(name="x", engine="echo", info=_info("x"))
    manifest.parameters["server_args"] = ATTACK
    with pytest.raises(InvalidRequest, match="unknown parameter 'server_args'"):
        store.create("x", manifest)
    assert not store.exists("x")


def test_a_misspelt_engine_setting_is_named(tmp_path):
    store = Store(tmp_path / "models")
    bad = ModelManifest(name="x", engine="echo", info=_info("x"), engine_settings={"tokenz": 3})
    with pytest.raises(InvalidRequest, match="unknown echo setting 'tokenz'"):
        store.create("x", bad)
    with pytest.raises(EngineFailed, match="unknown echo setting 'tokenz'"):
        ECHO.load(bad)
    with pytest.raises(EngineFailed, match="echo setting 'tokens'"):
        ECHO.load(ModelManifest(name="x", engine="echo", info=_info("x"), engine_settings={"tokens": "many"}))


def test_a_manifest_written_now_carries_its_schema_version(tmp_path):
    store = Store(tmp_path / "models")
    store.create("e", ModelManifest(name="e", engine="echo", info=_info("e"), parameters={"temperature": 0.5},
                                    engine_settings={"tokens": 3}))  # fmt: skip
    model = json.loads(_manifest_path(store, "e").read_text())["model"]
    assert model["schema_version"] == MANIFEST_SCHEMA
    assert model["parameters"] == {"temperature": 0.5} and model["engine_settings"] == {"tokens": 3}


# -- reading: today's layout is never migrated -------------------------------------------------------


def test_a_hand_written_setting_in_parameters_is_refused_after_migration(tmp_path, monkeypatch):
    """An old manifest is migrated (and rewritten) once; settings added to its parameters afterwards
    are refused when it is read, not moved into the engine's settings, and no llama-server starts."""
    from imgscribe.engines.llamacpp import process

    started = []
    monkeypatch.setattr(process.ServerProcess, "start", lambda self: started.append(self))
    store = Store(tmp_path / "models")
    model, projector = _gguf_pair(tmp_path)
    old = manifest_for_gguf("tiny", model, projector).model_dump(exclude={"schema_version", "engine_settings"})
    old["parameters"] = {"num_ctx": 2048, "num_parallel": 2}
    path = _write_old(store, "tiny", old)
    assert store.resolve("tiny").engine_settings == {"num_parallel": 2}  # migrated...
    data = json.loads(path.read_text())
    assert data["model"]["schema_version"] == MANIFEST_SCHEMA  # ...and rewritten

    data["model"]["parameters"]["server_args"] = ATTACK  # by hand, in today's layout
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedModel, match="unknown parameter 'server_args'"):
        store.resolve("tiny")
    assert "server_args" not in path.read_text().split('"engine_settings"')[1]  # not moved anywhere

    from imgscribe.scheduler import Scheduler

    scheduler = Scheduler(store, num_parallel=0)
    try:
        with pytest.raises(DamagedModel, match="server_args"):
            scheduler.load("tiny")
    finally:
        scheduler.close()
    assert started == []


def test_an_unknown_schema_version_is_refused(tmp_path):
    store = Store(tmp_path / "models")
    store.create("e", ModelManifest(name="e", engine="echo", info=_info("e")))
    path = _manifest_path(store, "e")
    data = json.loads(path.read_text())
    data["model"]["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DamagedModel, match="schema_version 99"):
        store.resolve("e")


# -- migration of the older layout ---------------------------------------------------------------------


def test_an_old_echo_manifest_is_migrated_and_its_settings_work(tmp_path):
    store = Store(tmp_path / "models")
    old = ModelManifest(name="e", engine="echo", info=_info("e")).model_dump(exclude={"schema_version", "engine_settings"})
    old["parameters"] = {"tokens": 3, "parallel": 2, "temperature": 0.5, "stop": "END", "num_ctx": 2048.0,
                         "template": "{{ .Prompt }}", "server_args": ATTACK, "nonsense": 1}  # fmt: skip
    path = _write_old(store, "e", old)
    manifest = store.resolve("e")
    assert manifest.parameters == {"temperature": 0.5, "stop": ["END"], "num_ctx": 2048}
    assert manifest.engine_settings == {"tokens": 3, "parallel": 2}  # the rest was no echo setting: dropped
    assert manifest.template == "{{ .Prompt }}"
    runner = ECHO.load(manifest)
    assert runner.tokens == 3 and runner.parallel == 2
    written = json.loads(path.read_text())["model"]
    assert written["schema_version"] == MANIFEST_SCHEMA and "server_args" not in json.dumps(written)


def test_an_old_llamacpp_manifest_keeps_its_typed_settings_only(tmp_path):
    store = Store(tmp_path / "models")
    model, projector = _gguf_pair(tmp_path)
    old = manifest_for_gguf("tiny", model, projector).model_dump(exclude={"schema_version", "engine_settings"})
    old["parameters"] = {"num_ctx": 1024, "num_parallel": 2, "load_timeout": 30, "server_args": ATTACK,
                         "request_args": {"ignore_eos": True, "n_probs": 5}, "url": "http://evil"}  # fmt: skip
    _write_old(store, "tiny", old)
    manifest = store.resolve("tiny")
    assert manifest.parameters == {"num_ctx": 1024}
    assert manifest.engine_settings == {"num_parallel": 2, "load_timeout": 30, "ignore_eos": True}
    args = server_args(manifest, 2, tmp_path / "logs")
    assert "--log-file" not in args and "/other.gguf" not in args
    assert args[args.index("-c") + 1] == "2048" and args[args.index("-m") + 1] == str(model)


def test_an_old_remote_manifest_is_migrated_and_its_settings_work(tmp_path):
    store = Store(tmp_path / "models")
    old = ModelManifest(name="far", engine="remote", info=_info("far", "remote")).model_dump(
        exclude={"schema_version", "engine_settings"})  # fmt: skip
    old["parameters"] = {"url": "http://127.0.0.1:9/", "model": "m", "api": "openai", "headers": {"X-A": "1"},
                         "extra_body": {"top_a": 1}, "num_parallel": 3, "timeout": 5, "temperature": 0.2}  # fmt: skip
    _write_old(store, "far", old)
    manifest = store.resolve("far")
    assert manifest.parameters == {"temperature": 0.2}
    runner = RemoteRunner(manifest)
    assert (runner.url, runner.model, runner.api, runner.parallel, runner.timeout) == ("http://127.0.0.1:9", "m", "openai", 3, 5)
    assert runner.headers == {"X-A": "1"} and runner.extra_body == {"top_a": 1}


def test_an_old_bare_manifest_is_migrated(tmp_path):
    """The store's first format (a bare ModelManifest) is migrated the same way."""
    store = Store(tmp_path / "models")
    old = ModelManifest(name="e", engine="echo", info=_info("e")).model_dump(exclude={"schema_version", "engine_settings"})
    old["parameters"] = {"tokens": 2, "server_args": ATTACK}
    path = _manifest_path(store, "e")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old))
    manifest = store.resolve("e")
    assert manifest.engine_settings == {"tokens": 2} and manifest.parameters == {}


# -- pull: a registry's params layer gives options only --------------------------------------------------


def test_a_registrys_params_layer_cannot_set_engine_settings(store, registry):
    params = {"temperature": 0.3, "stop": ["</s>"], "server_args": ATTACK, "num_parallel": 8,
              "request_args": {"ignore_eos": True}, "num_ctx": "huge"}  # fmt: skip
    registry.add_model("llava", "evil", [("model", tiny_model_gguf("tiny-llava")), ("projector", tiny_projector_gguf()),
                                          ("params", json.dumps(params).encode())])  # fmt: skip
    name = f"{registry.host}/library/llava:evil"
    list(store.pull(name, insecure=True))
    model = store.resolve(name)
    assert model.parameters == {"temperature": 0.3, "stop": ["</s>"]}
    assert model.engine_settings == {}
