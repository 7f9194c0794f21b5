"""The content-addressed store: blobs, snapshots, manifests, and what ``rm`` frees."""

from __future__ import annotations

import json
import os

import pytest

from imgscribe.errors import InvalidRequest, ModelNotFound
from imgscribe.store import DamagedModel, Store
from imgscribe.store.blobs import BlobStore, check_digest, safe_relative, write_atomic
from imgscribe.types import ModelInfo, ModelManifest

from .fake_remotes import digest_of


def _manifest(files: dict[str, str] | None = None, engine: str = "echo") -> ModelManifest:
    return ModelManifest(name="x", engine=engine, files=files or {}, info=ModelInfo(name="x", engine=engine))


def _names(store: Store) -> set[str]:
    return {i.name for i in store.list() if i.name != "builtin:latest"}


def test_blobs_are_named_by_their_sha256_and_stored_once(tmp_path):
    blobs = BlobStore(tmp_path)
    digest = blobs.put_bytes(b"hello")
    assert digest == digest_of(b"hello")
    assert blobs.path(digest).name == "sha256-" + digest.split(":")[1]
    assert blobs.put_bytes(b"hello") == digest
    source = tmp_path / "file.bin"
    source.write_bytes(b"hello")
    assert blobs.put_file(source) == digest
    assert [p.name for p in blobs.dir.iterdir()] == [blobs.path(digest).name]  # no temporary files left
    assert blobs.verify(digest)


@pytest.mark.parametrize("bad", ["", "sha256:abc", "md5:" + "0" * 32, "sha256:../../etc/passwd", "sha256:" + "g" * 64])
def test_digests_are_checked(tmp_path, bad):
    with pytest.raises(InvalidRequest):
        BlobStore(tmp_path).path(bad)


def test_digest_forms():
    hexd = "a" * 64
    assert check_digest(f"sha256-{hexd}") == check_digest(f"SHA256:{hexd.upper()}") == f"sha256:{hexd}"


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "C:evil", "./x"])
def test_file_names_from_a_remote_listing_cannot_leave_the_folder(bad):
    with pytest.raises(InvalidRequest):
        safe_relative(bad)
    assert str(safe_relative("processor/config.json")) == "processor/config.json"


def test_write_atomic_replaces_whole_files(tmp_path):
    target = tmp_path / "a" / "b.json"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


def test_snapshots_are_folders_of_links_to_blobs(tmp_path):
    blobs = BlobStore(tmp_path)
    config, weights = blobs.put_bytes(b'{"a": 1}'), blobs.put_bytes(b"weights")
    folder = blobs.snapshot({"config.json": config, "sub/model.safetensors": weights})
    assert (folder / "config.json").read_bytes() == b'{"a": 1}'
    assert (folder / "sub" / "model.safetensors").read_bytes() == b"weights"
    assert os.stat(folder / "config.json").st_ino == os.stat(blobs.path(config)).st_ino  # a link, not a copy
    assert blobs.snapshot({"sub/model.safetensors": weights, "config.json": config}) == folder  # same files, same folder
    assert blobs.snapshot_of(folder / "sub" / "model.safetensors") == folder.name
    assert blobs.snapshot_files(folder.name) == {"config.json": config, "sub/model.safetensors": weights}
    with pytest.raises(InvalidRequest):
        blobs.snapshot({"../escape": config})


def test_files_outside_the_store_are_used_in_place_and_never_deleted(store, tmp_path):
    folder = tmp_path / "my-checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    info = store.create("mine", _manifest({"model": str(folder)}, "transformers"))
    assert info.size == 2
    assert store.resolve("mine").files["model"] == str(folder)
    assert store.stored("mine").layers == []
    store.delete("mine")
    assert (folder / "config.json").is_file()


def test_store_files_become_layers_and_relative_paths(store, tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF model")
    blob = store.add_file(source)
    store.create("imported", _manifest({"model": str(blob)}, "llamacpp"))
    stored = store.stored("imported")
    assert stored.model.files["model"] == f"blobs/{blob.name}"  # relative: the store folder may move
    assert [(layer.digest, layer.role) for layer in stored.layers] == [(digest_of(b"GGUF model"), "model")]
    assert store.resolve("imported").files["model"] == str(store.root / "blobs" / blob.name)
    moved = Store(store.root)  # another Store object on the same folder reads the same
    assert moved.resolve("imported").files["model"] == str(blob)


def test_shared_blobs_are_freed_only_when_nothing_uses_them(store, tmp_path):
    shared = store.add_file(_write(tmp_path / "p", b"projector"))
    only_a = store.add_file(_write(tmp_path / "a", b"model a"))
    only_b = store.add_file(_write(tmp_path / "b", b"model b"))
    store.create("a", _manifest({"model": str(only_a), "projector": str(shared)}, "llamacpp"))
    store.create("b", _manifest({"model": str(only_b), "projector": str(shared)}, "llamacpp"))
    assert len(list(store.blobs.dir.iterdir())) == 3  # the shared projector once
    freed = store.delete("a")
    assert freed == len(b"model a")
    assert not only_a.exists() and shared.exists() and only_b.exists()
    store.delete("b")
    assert list(store.blobs.dir.iterdir()) == []
    assert not (store.root / "manifests" / "registry.ollama.ai").exists()  # empty folders pruned


def test_copy_shares_blobs_and_rm_of_the_original_keeps_them(store, tmp_path):
    blob = store.add_file(_write(tmp_path / "m", b"model"))
    store.create("orig", _manifest({"model": str(blob)}, "llamacpp"))
    store.copy("orig", "team/copy:v2")
    assert store.stored("team/copy:v2").digests == store.stored("orig").digests
    store.delete("orig")
    assert blob.exists()
    assert store.resolve("team/copy:v2").files["model"] == str(blob)
    store.delete("team/copy:v2")
    assert not blob.exists()


def test_creating_from_a_pulled_model_keeps_its_blobs(store, tmp_path):
    """/api/create with ``from``: resolve, change the system prompt, create under a new name."""
    blob = store.add_file(_write(tmp_path / "m", b"model"))
    store.create("base", _manifest({"model": str(blob)}, "llamacpp"))
    derived = store.resolve("base")
    derived.system = "Describe images tersely."
    store.create("terse", derived)
    store.delete("base")
    assert blob.exists()
    assert store.resolve("terse").system == "Describe images tersely."
    assert store.resolve("terse").info.digest != ""


def test_snapshot_models_free_their_folder(store):
    config, weights = store.blobs.put_bytes(b"{}"), store.blobs.put_bytes(b"w")
    folder = store.blobs.snapshot({"config.json": config, "model.safetensors": weights})
    store.create("ckpt", _manifest({"model": str(folder)}, "transformers"))
    assert store.stored("ckpt").digests == {config, weights}
    assert store.stored("ckpt").model.files["model"] == f"snapshots/{folder.name}"
    store.delete("ckpt")
    assert not folder.exists()
    assert store.blobs.all() == []


def test_prune_frees_orphans_and_keeps_partial_downloads(store):
    used = store.blobs.put_bytes(b"used")
    orphan = store.blobs.put_bytes(b"orphan")
    store.create("m", _manifest({"model": str(store.blobs.path(used))}, "llamacpp"))
    partial = store.blobs.partial(digest_of(b"in progress"))
    partial.write_bytes(b"in pro")
    assert store.prune() == len(b"orphan")
    assert store.blobs.all() == [used] and partial.exists()
    assert orphan not in store.blobs.all()


def test_a_model_whose_blob_went_missing_says_so(store, tmp_path):
    blob = store.add_file(_write(tmp_path / "m", b"model"))
    store.create("m", _manifest({"model": str(blob)}, "llamacpp"))
    blob.unlink()
    with pytest.raises(DamagedModel, match="missing from the store"):
        store.resolve("m")
    store.delete("m")  # and it can still be removed
    assert not store.exists("m")


def test_the_first_manifest_format_is_still_read(store):
    path = store.root / "manifests" / "registry.ollama.ai" / "library" / "old" / "latest"
    path.parent.mkdir(parents=True)
    path.write_text(_manifest({"model": "/somewhere/model.gguf"}, "llamacpp").model_dump_json())
    assert store.resolve("old").files["model"] == "/somewhere/model.gguf"
    assert "old:latest" in _names(store)


def test_temporary_and_foreign_files_are_not_listed(store):
    store.create("good", _manifest())
    folder = store.root / "manifests" / "registry.ollama.ai" / "library" / "good"
    (folder / ".tmp-abc").write_text("{")
    (store.root / "manifests" / "stray.txt").write_text("hello")
    (folder / "broken").write_text('{"model": ')
    assert _names(store) == {"good:latest"}


def test_names_that_would_escape_are_refused(store):
    for bad in ("../../etc/passwd", "a/../../b", "x:../y", "..", "a/b/c/d"):
        with pytest.raises(InvalidRequest):
            store.create(bad, _manifest())
        with pytest.raises(InvalidRequest):
            store.resolve(bad)
        with pytest.raises(InvalidRequest):
            list(store.pull(bad))
    assert not any(p.name == "passwd" for p in store.root.rglob("*"))


def test_not_found(store):
    with pytest.raises(ModelNotFound, match="model 'nope:latest' not found|model 'nope' not found"):
        store.resolve("nope")
    with pytest.raises(ModelNotFound):
        store.copy("nope", "other")
    with pytest.raises(ModelNotFound):
        store.delete("nope")


def test_manifest_file_format(store, tmp_path):
    blob = store.add_file(_write(tmp_path / "m", b"model"))
    store.create("m", _manifest({"model": str(blob)}, "llamacpp"), source={"kind": "test"})
    data = json.loads((store.root / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest").read_text())
    assert data["schemaVersion"] == 2
    assert data["mediaType"] == "application/vnd.imgscribe.manifest.v1+json"
    assert data["layers"][0]["digest"] == digest_of(b"model")
    assert data["source"] == {"kind": "test"}
    assert data["model"]["engine"] == "llamacpp"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
