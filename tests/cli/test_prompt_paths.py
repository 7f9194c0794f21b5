import pytest

from imgscribe.cli.prompt_paths import extract_image_paths
from imgscribe.errors import InvalidRequest


@pytest.fixture
def files(tmp_path, monkeypatch):
    (tmp_path / "my pics").mkdir()
    for name in ("art.png", "my pics/x.JPG", "b.webp", "c.heic"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    "prompt, text, names",
    [
        ("What's in this image? ./art.png", "What's in this image?", ["art.png"]),
        ("describe this image: ./art.png", "describe this image:", ["art.png"]),
        ("compare ./art.png and ./b.webp.", "compare and.", ["art.png", "b.webp"]),
        ('what is "./my pics/x.JPG"?', "what is?", ["x.JPG"]),
        ("what is ./my\\ pics/x.JPG", "what is", ["x.JPG"]),
        ("look at ~/c.heic", "look at", ["c.heic"]),
        ("look at art.png", "look at", ["art.png"]),
        ("no images here. a.b/c?", "no images here. a.b/c?", []),
        ("mentions photo.png but it is not here", "mentions photo.png but it is not here", []),
    ],
)
def test_paths_are_found_and_removed(files, prompt, text, names):
    got = extract_image_paths(prompt)
    assert got.prompt == text
    assert [p.name for p in got.paths] == names
    assert all(p.is_file() for p in got.paths)


def test_absolute_path_with_spaces(files):
    got = extract_image_paths(f"describe {files}/my pics/x.JPG please")
    assert got.prompt == "describe please" and got.paths == [files / "my pics" / "x.JPG"]


def test_a_path_that_names_no_file_is_an_error(files):
    with pytest.raises(InvalidRequest, match="image not found: ./missing.png"):
        extract_image_paths("what is ./missing.png")
