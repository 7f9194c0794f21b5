"""Property tests for path traversal (issue 17, "security, kept"): hostile model names in every
route that takes one, server paths in ``/api/create``'s ``from``/``mmproj``, blob digests and
uploaded file names, and the sidecar files ``imgscribe describe`` writes next to images.

Every test lays a sentinel tree around the store (a decoy store beside it, files above it) and
compares a listing of the whole tree, with sizes, times and hashes, before and after: nothing is
created, changed or deleted outside what the request may touch, and a decoy model is never read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from batch.conftest import save_image
from server.conftest import add_echo

from imgscribe.errors import InvalidRequest
from imgscribe.scheduler import Scheduler
from imgscribe.server import create_app
from imgscribe.store import Store
from imgscribe.store.names import parse_name

from .conftest import error_message

pytestmark = pytest.mark.timeout(300)
BOUNDED = settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))

HOSTILE = ["..", "../", "..\\", "/", "\\", "\x00", "%2e%2e%2f", "%2e%2e", "..%2f", "%00", "/etc/passwd",
           "C:\\Windows\\win.ini", "c:/", "\u2024\u2024\u2215", "\uff0e\uff0e\uff0f", "\u2215", "\u0130", "~",
           "\n", "\r\n", "::", "@", "?", "#", " ", "a" * 81, "b" * 300, "x/y/z/w", "../decoy/", "/..",
           "registry.ollama.ai/../../decoy/secret"]  # fmt: skip
BENIGN = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8) | st.sampled_from(
    ["llava", "secret", "decoy", "manifests", "registry.ollama.ai", "library", "latest", ":", "."]
)


@st.composite
def hostile_names(draw) -> str:
    """A string with at least one hostile piece, among ordinary ones, in any order."""
    pieces = draw(st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=3)) + draw(st.lists(BENIGN, max_size=3))
    return "".join(draw(st.permutations(pieces)))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): its kind, size, mtime and a content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st_ = os.lstat(path)
            if os.path.islink(path):
                out[path] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[path] = ("dir",)
            else:
                with open(path, "rb") as f:
                    out[path] = ("file", st_.st_size, st_.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return out


def world(tmp: Path) -> tuple[Path, Store]:
    """``tmp/world``: ``store`` (an echo model ``llava``), ``decoy`` (a store holding ``secret``
    beside it), and ``outside/`` with a file."""
    top = tmp / "world"
    store = Store(top / "store")
    add_echo(store, "llava")
    decoy = Store(top / "decoy")
    add_echo(decoy, "secret")
    (top / "outside").mkdir()
    (top / "outside" / "keep.txt").write_text("sentinel")
    (top / "manifests").mkdir()  # where "../manifests/..." would land from the store
    return top, store


def name_routes(client: TestClient) -> dict:
    return {
        "/api/show": lambda n: client.post("/api/show", json={"model": n}),
        "/api/delete": lambda n: client.request("DELETE", "/api/delete", json={"model": n}),
        "/api/copy source": lambda n: client.post("/api/copy", json={"source": n, "destination": "copied"}),
        "/api/copy destination": lambda n: client.post("/api/copy", json={"source": "llava", "destination": n}),
        "/api/create model": lambda n: client.post("/api/create", json={"model": n, "from": "llava", "stream": False}),
        "/api/create from": lambda n: client.post("/api/create", json={"model": "made", "from": n, "stream": False}),
        "/api/pull": lambda n: client.post("/api/pull", json={"model": n, "stream": False}),
        "/api/push": lambda n: client.post("/api/push", json={"model": n, "stream": False}),
        "/api/generate": lambda n: client.post("/api/generate", json={"model": n, "prompt": "x", "stream": False}),
        "/v1/models/{name}": lambda n: client.get("/v1/models/" + quote(n, safe="")),
    }


def test_hostile_model_names_are_4xx_in_every_route_and_touch_nothing(tmp_path, tally):
    """Hypothesis over names built from hostile pieces (``..``, ``/``, ``\\``, NUL, ``%2e%2e%2f``,
    absolute and Windows paths, unicode dots and slashes, newlines, over-long parts) mixed with
    ordinary ones, sent to /api/show, /api/delete, /api/copy (source and destination), /api/create
    (``model`` and ``from``), /api/pull, /api/push, /api/generate and /v1/models/{name}: each is a
    4xx with an error in the route's dialect (push: its 501 "not available", whatever the name),
    and the listing of the whole tree around the store (the store, a decoy store beside it, files
    above it) is the same before and after. A mix that is still a legal name (``0......``) may
    succeed, but changes nothing but its own manifest (pull and push are not sent those)."""
    top, store = world(tmp_path)
    with TestClient(create_app(Scheduler(store, num_parallel=0))) as client:
        routes = name_routes(client)
        before = snapshot(top)
        manifests = store.root / "manifests"

        @settings(BOUNDED, max_examples=200)
        @given(hostile_names(), st.sampled_from(sorted(routes)))
        def check(name, route):
            nonlocal before
            try:
                parsed = parse_name(name)  # "0......" is a legal name: it must stay where its parts say
            except InvalidRequest:
                parsed = None
            if parsed is not None and route in ("/api/pull", "/api/push"):
                return  # a legal name would go to the registry: no traffic leaves this machine
            r = routes[route](name)
            if parsed is None:
                expected = r.status_code == 501 if route == "/api/push" else 400 <= r.status_code < 500
                assert expected, (route, name, r.status_code, r.text)
                assert error_message(route.split(" ")[0], r)
                assert snapshot(top) == before, (route, name)
                tally.add(f"refused name, {route}: {r.status_code}")
                return
            assert r.status_code < 500, (route, name, r.text)
            own = manifests.joinpath(*parsed.parts)
            after = snapshot(top)
            for path in set(after.items()) ^ set(before.items()):
                changed = Path(path[0])
                assert changed == own or changed in own.parents and changed.is_relative_to(manifests), (name, path)
            before = after
            tally.add(f"legal name, {route}: {r.status_code}")

        check()
        for route, send in routes.items():  # the same few by hand, on every route
            for name in ("../decoy/manifests/registry.ollama.ai/library/secret/latest", "..", "/etc/passwd",
                         "..%2f..%2fdecoy", "library/../../decoy/secret", "secret\x00"):  # fmt: skip
                r = send(name)
                assert r.status_code == 501 if route == "/api/push" else 400 <= r.status_code < 500, (route, name)
        assert snapshot(top) == before


def test_server_paths_in_create_only_inside_the_allowed_roots(tmp_path, monkeypatch, tally):
    """/api/create ``from`` and ``mmproj`` with server paths. No IMGSCRIBE_IMPORT_ROOTS: every
    absolute path, existing or not, is the same 403. With one root: hypothesis over paths built
    from the root, ``..``, ``.``, doubled slashes, a link inside the root pointing out, a link
    pointing in, and names outside: the answer is a 403 exactly when the path, links and dots
    resolved, is outside the root (else a 400: not a model, or missing), its sentence is the same
    whether the outside target exists or not, and nothing outside changes. A ``modelfile`` field
    (old Ollama clients) is not parsed, so its ``FROM`` path is never read."""
    top, store = world(tmp_path)
    root, outside = top / "root", top / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "notamodel.txt").write_text("x")
    (outside / "model.gguf").write_bytes(b"GGUF")
    os.symlink(outside, root / "link-out")
    os.symlink(root / "sub", root / "link-in")
    os.symlink(outside / "model.gguf", root / "sub" / "file-out.gguf")
    before = snapshot(outside)

    with TestClient(create_app(Scheduler(store, num_parallel=0))) as client:
        answers = {client.post("/api/create", json={"model": "m", "from": p, "stream": False}).text
                   for p in (str(outside / "model.gguf"), "/no/such", str(root / "notamodel.txt"), "/etc/passwd")}
        assert len(answers) == 1 and "IMGSCRIBE_IMPORT_ROOTS" in answers.pop()
    monkeypatch.setenv("IMGSCRIBE_IMPORT_ROOTS", str(root))
    with TestClient(create_app(Scheduler(store, num_parallel=0))) as client:
        steps = st.sampled_from(["..", ".", "", "sub", "link-out", "link-in", "notamodel.txt", "model.gguf",
                                 "file-out.gguf", "outside", "missing", "root"])  # fmt: skip

        @settings(BOUNDED, max_examples=80)
        @given(st.lists(steps, min_size=1, max_size=5), st.sampled_from(["from", "mmproj"]))
        def check(parts, field):
            path = str(root) + "/" + "/".join(parts)
            body = {"model": "m", "from": path, "stream": False}
            if field == "mmproj":  # with a ``from`` inside the root, so that the projector's path decides
                body = {"model": "m", "from": str(root / "notamodel.txt"), "mmproj": path, "stream": False}
            r = client.post("/api/create", json=body)
            inside = Path(os.path.realpath(path)).is_relative_to(root)
            if inside:
                assert r.status_code == 400, (path, r.text)
            else:
                assert r.status_code == 403 and "IMGSCRIBE_IMPORT_ROOTS" in r.json()["error"], (path, r.text)
                absent = os.path.realpath(path) + "-absent"  # outside too, and not there
                twin = client.post("/api/create", json={**body, field: absent}).json()["error"]
                assert twin.replace(absent, "P") == r.json()["error"].replace(path, "P")
            assert snapshot(outside) == before and not store.exists("m")
            tally.add(f"{field}: {'inside' if inside else 'outside'}: {r.status_code}")

        check()
        # an old Ollama client's Modelfile text is not read by the server: its FROM path goes nowhere
        r = client.post("/api/create", json={"model": "m", "modelfile": f"FROM {outside}/model.gguf", "stream": False})
        assert r.status_code == 400 and "'from' is required" in r.json()["error"] and not store.exists("m")
        for bad in ("relative/x.gguf", str(root) + "/\x00x"):
            r = client.post("/api/create", json={"model": "m", "from": "/no/such", "mmproj": bad, "stream": False})
            assert 400 <= r.status_code < 500, r.text


def test_blob_digests_and_uploaded_file_names(tmp_path, tally):
    """Hypothesis over digests (valid ones, and ones with a wrong prefix, length, case or
    character, whitespace, unicode digits, ``../``, NUL, a path) on HEAD and POST
    /api/blobs/:digest and in /api/create ``files``, and over hostile file names in ``files``:
    a digest is taken exactly when it is ``sha256:`` (or Ollama's ``sha256-``) and 64 hex digits;
    everything else is a 4xx; ``adapters`` are refused whatever they say; the only files that
    ever appear are ``blobs/sha256-<64 hex>`` (of bodies that matched), nothing outside."""
    top, store = world(tmp_path)
    empty = hashlib.sha256(b"").hexdigest()
    valid = st.text("0123456789abcdef", min_size=64, max_size=64)
    mangled = st.one_of(
        valid.map(lambda h: "sha256:" + h), valid.map(lambda h: "sha256-" + h),
        valid.map(lambda h: "sha256:" + h.upper()), valid.map(lambda h: "sha512:" + h),
        valid.map(lambda h: "sha256:" + h[:63]), valid.map(lambda h: "sha256:" + h + "0"),
        valid.map(lambda h: "sha256:" + h[:60] + "../x"), valid.map(lambda h: "sha256:" + h[:63] + "\u0663"),
        valid.map(lambda h: "sha256:" + h[:63] + "\uff46"), valid.map(lambda h: "sha256:" + h + "\x00"),
        valid.map(lambda h: "../../sha256-" + h), st.just("sha256:" + empty), hostile_names(),
    )  # fmt: skip

    def accepted(d: str) -> bool:
        import re

        return re.fullmatch(r"sha256[:-][0-9a-fA-F]{64}", d.strip()) is not None

    with TestClient(create_app(Scheduler(store, num_parallel=0))) as client:
        assert client.post(f"/api/blobs/sha256:{empty}", content=b"").status_code == 201  # so names get checked
        before = snapshot(top)

        @settings(BOUNDED, max_examples=100)
        @given(mangled, hostile_names())
        def check(digest, filename):
            url = "/api/blobs/" + quote(digest, safe=":")
            head, post = client.head(url), client.post(url, content=b"")
            if accepted(digest):
                assert head.status_code in (200, 404) and post.status_code in (200, 201, 400), (digest, post.text)
                assert (post.status_code < 300) == (digest.strip().lower()[7:] == empty)
            else:
                assert 400 <= head.status_code < 500 and 400 <= post.status_code < 500, (digest, post.text)
            for files in ({"model.gguf": digest}, {filename: "sha256:" + empty}):
                r = client.post("/api/create", json={"model": "m", "files": files, "stream": False})
                assert 400 <= r.status_code < 500 or (accepted(digest) and digest.strip().lower()[7:] == empty
                                                       and "model.gguf" in files), (files, r.text)  # fmt: skip
            r = client.post("/api/create", json={"model": "m", "adapters": {filename: digest}, "stream": False})
            assert r.status_code == 501 and "adapters" in r.json()["error"]
            changed = {p for p in set(snapshot(top).items()) ^ set(before.items())}
            legit = str(store.root / "blobs" / f"sha256-{empty}")
            assert {p for p, _ in changed} <= {legit, str(store.root / "blobs")}, changed
            tally.add("taken" if accepted(digest) else "refused")

        check()


def test_sidecars_stay_next_to_their_images_whatever_the_names(tmp_path, cli_env, tally):
    """``imgscribe describe FOLDER --sidecar ... --xmp sidecar`` on an echo model, over a folder
    of images with hostile-but-legal names (``..foo.jpg``, a newline, a leading dash, spaces,
    unicode, 204 bytes), a symlink to an image outside, a symlinked folder pointing outside, and a
    ``.txt`` link pointing outside where a sidecar would go: every sidecar written is a regular
    file in the folder of the image path it belongs to, no file outside the source folder changes
    (the link's target included), the linked folder is not walked, and the run ends with code 0.
    Hidden names (``..foo.jpg``) are skipped in a folder walk, so they are also given by name."""
    top = tmp_path / "batch"
    src, outside = top / "src", top / "outside"
    (outside / "dir").mkdir(parents=True)
    names = ["..foo.jpg", "a\nb.jpg", "-rf.jpg", " spaced .jpg", "\u65e5\u672c.jpg", "x" * 200 + ".jpg",
             "a.b.c.jpg", "...jpg", "sub/..bar.jpg"]  # fmt: skip
    for i, name in enumerate(names):
        save_image(src / name, i, format="JPEG")
    save_image(outside / "real.jpg", 20)
    save_image(outside / "dir" / "deep.jpg", 21)
    (outside / "secret.txt").write_text("do not touch")
    os.symlink(outside / "real.jpg", src / "link.jpg")
    os.symlink(outside / "dir", src / "linkdir")
    save_image(src / "victim.jpg", 22)
    os.symlink(outside / "secret.txt", src / "victim.txt")
    store = Store(Path(cli_env["IMGSCRIBE_MODELS"]))
    add_echo(store, "echo-test")
    before = snapshot(outside)
    result = subprocess.run([sys.executable, "-m", "imgscribe", "describe", str(src), "-m", "echo-test", "--local",
                             *(str(src / n) for n in names if n.rsplit("/", 1)[-1].startswith(".")),  # hidden: by name
                             "-p", "Caption.", "--sidecar", "response", "--sidecar-existing", "replace",
                             "--xmp", "sidecar", "--out", str(top / "out.jsonl")],
                            capture_output=True, text=True, env=cli_env, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert snapshot(outside) == before
    images = {p for p in src.rglob("*") if p.suffix == ".jpg"}
    for path in src.rglob("*"):
        if path.suffix in (".txt", ".xmp"):
            assert not path.is_symlink() and path.is_file(), path
            assert any(i.parent == path.parent and i.stem == path.stem for i in images), path
            tally.add(f"{path.suffix} next to its image")
    for sidecar in ("..foo.txt", "...txt", "sub/..bar.xmp", "a\nb.xmp", "victim.txt", "link.txt", "x" * 200 + ".txt"):
        assert (src / sidecar).is_file(), sidecar
    assert not (top / "foo.txt").exists() and not list(top.glob("*.xmp"))
    shutil.rmtree(top)


def test_a_sidecar_for_a_name_near_the_file_name_limit_is_written(tmp_path, cli_env):
    """An image named with 246 bytes (legal: the limit is 255) gets its 246-byte ``.txt`` sidecar,
    and the run ends with code 0 (its temporary file's name was 14 bytes longer, and the run
    failed with ENAMETOOLONG, until 32a63f9)."""
    src = tmp_path / "src"
    save_image(src / ("x" * 242 + ".jpg"), 1, format="JPEG")
    add_echo(Store(Path(cli_env["IMGSCRIBE_MODELS"])), "echo-test")
    result = subprocess.run([sys.executable, "-m", "imgscribe", "describe", str(src), "-m", "echo-test", "--local",
                             "-p", "Caption.", "--sidecar", "response", "--out", str(tmp_path / "out.jsonl")],
                            capture_output=True, text=True, env=cli_env, timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (src / ("x" * 242 + ".txt")).is_file()


@pytest.mark.parametrize("name", ["a\x00.safetensors", "b" * 300 + ".safetensors", "model.safetensors"])
def test_uploaded_checkpoint_files_with_bad_names_or_bodies_are_a_400(tmp_path, name):
    """/api/create ``files`` of a checkpoint (a config.json and one 7-byte weights blob, both
    uploaded): a weights name holding NUL or over the 255-byte limit, or a weights file too short
    to be safetensors, is a 400 naming the problem, not a 500 (all three were)."""
    store = Store(tmp_path / "store")
    with TestClient(create_app(Scheduler(store, num_parallel=0)), raise_server_exceptions=False) as client:
        digests = []
        for data in (b'{"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava"}', b"weights"):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert client.post(f"/api/blobs/{digest}", content=data).status_code == 201
            digests.append(digest)
        files = {"config.json": digests[0], name: digests[1]}
        r = client.post("/api/create", json={"model": "m", "files": files, "stream": False})
        assert r.status_code == 400, r.text
