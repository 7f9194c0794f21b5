import pytest

from imgscribe.errors import InvalidRequest, ModelNotFound
from imgscribe.store import Store, parse_name
from imgscribe.types import ModelInfo, ModelManifest


@pytest.mark.parametrize(
    "name, short",
    [
        ("llava", "llava:latest"),
        ("llava:13b", "llava:13b"),
        ("library/llava:7b", "llava:7b"),
        ("me/mine", "me/mine:latest"),
        ("registry.example.com:5000/team/model:v1", "registry.example.com:5000/team/model:v1"),
        ("LLaVA:7b", "llava:7b"),
    ],
)
def test_names(name, short):
    assert parse_name(name).short == short


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/../../b", "..", ".hidden", "a/b/c/d", "x:../y", "a b"])
def test_names_that_could_escape_are_refused(bad):
    with pytest.raises(InvalidRequest):
        parse_name(bad)


def _manifest(engine="echo"):
    return ModelManifest(name="x", engine=engine, info=ModelInfo(name="x", engine=engine))


def test_builtin_is_always_there(tmp_path):
    store = Store(tmp_path)
    names = [i.name for i in store.list()]
    assert names == ["builtin:latest"]
    assert store.resolve("builtin").engine == "builtin"


def test_create_list_copy_delete(tmp_path):
    store = Store(tmp_path)
    store.create("mine:v1", _manifest())
    store.copy("mine:v1", "team/other")
    assert {i.name for i in store.list()} == {"builtin:latest", "mine:v1", "team/other:latest"}
    assert store.resolve("team/other").info.name == "team/other:latest"
    store.delete("mine:v1")
    with pytest.raises(ModelNotFound, match="model 'mine:v1' not found"):
        store.resolve("mine:v1")
    with pytest.raises(ModelNotFound):
        store.delete("mine:v1")


def test_builtin_is_protected(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(InvalidRequest):
        store.delete("builtin")
    with pytest.raises(InvalidRequest):
        store.create("builtin", _manifest())


def test_a_half_written_manifest_is_not_listed(tmp_path):
    store = Store(tmp_path)
    store.create("good", _manifest())
    broken = tmp_path / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"name": "bro')
    assert [i.name for i in store.list()] == ["builtin:latest", "good:latest"]
