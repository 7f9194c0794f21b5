"""Hypothesis over the parsers that take what users and clients send: image intake (random bytes,
mutated valid images), model names, Modelfiles, the Go template renderer, and the request bodies
of every route (Ollama, OpenAI, the Responses API, Anthropic's Messages) through the ASGI app.

The property is always the same: an answer, or one of the documented errors (an ImgscribeError
subclass in Python, a 4xx in the route's dialect over HTTP), within a bounded time. Each test
counts the examples it ran (``record_property``: docs/reliability.md).
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from imgscribe.errors import ImageTooLarge, ImgscribeError, InvalidImage, InvalidRequest
from imgscribe.images import header, intake
from imgscribe.prompts import Template, TemplateError
from imgscribe.server import create_app
from imgscribe.store.modelfile import parse_modelfile, to_modelfile
from imgscribe.store.names import parse_name
from imgscribe.types import ModelInfo, ModelManifest

from . import corpus
from .conftest import IMAGE_ROUTES, app_paths, available_routes, error_message

pytestmark = pytest.mark.timeout(120)

FAST = {"deadline": timedelta(seconds=5), "database": None, "suppress_health_check": list(HealthCheck)}
EXAMPLE_SECONDS = 5


def run_counted(record_property, test, **extra) -> None:
    """Run a @given function defined inside a test, then store how many examples it ran."""
    counts: Counter[str] = Counter()
    test(counts)
    record_property("outcomes", json.dumps({"counts": dict(counts), "examples": sum(counts.values()), **extra}))
    assert sum(counts.values()) > 0


# -- image intake ---------------------------------------------------------------------------------------


def _valid_images() -> list[bytes]:
    im = corpus.photo((24, 16))
    out = [corpus.encode(im, f) for f in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")]
    out.append(corpus.encode(im.convert("RGBA"), "PNG"))
    out.append(corpus.jpeg_with_exif(corpus.orientation(6)))
    frames = [PILImage.new("P", (8, 8), i) for i in range(4)]
    out.append(corpus.encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        out += [corpus.encode(im, "HEIF", quality=50), corpus.encode(im, "AVIF", quality=50)]
    except Exception:  # noqa: BLE001 - no HEIF writer here
        pass
    return out


VALID = _valid_images()
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00",
         b"MM\x00*", b"BM", b"\x00\x00\x00\x18ftypheic", b"\x00\x00\x00\x1cftypavif"]  # fmt: skip


def check_image(data: bytes, counts: Counter) -> None:
    started = time.monotonic()
    try:
        header(data)
        intake(data, all_frames=len(data) % 2 == 0, max_side=16 if len(data) % 3 == 0 else 0)
        counts["decoded"] += 1
    except (InvalidImage, ImageTooLarge) as exc:
        assert str(exc)
        counts[type(exc).__name__] += 1
    assert time.monotonic() - started < EXAMPLE_SECONDS


def test_intake_random_bytes(record_property):
    """Random bytes, and random bytes after each supported format's magic, through header() and intake()."""
    @settings(max_examples=300, **FAST)
    @given(data=st.one_of(st.binary(max_size=2048),
                          st.tuples(st.sampled_from(MAGIC), st.binary(max_size=1024)).map(b"".join)))  # fmt: skip
    def fuzz(counts, data):
        check_image(data, counts)

    run_counted(record_property, fuzz)


@st.composite
def mutated(draw) -> bytes:
    """A valid image with bytes flipped, set, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and len(data) > 8:
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate" and at > 0:
            del data[at:]
        if not data:
            break
    return bytes(data)


def test_intake_mutated_images(record_property):
    """Valid small JPEG/PNG/WebP/GIF/TIFF/BMP/HEIF/AVIF images (RGBA, EXIF-rotated, animated too) with 1-8 bytes flipped, set, inserted, deleted or the file cut short."""
    @settings(max_examples=400, **FAST)
    @given(data=mutated())
    def fuzz(counts, data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings about corrupt EXIF
            check_image(data, counts)

    run_counted(record_property, fuzz, bases=len(VALID))


# -- model names, Modelfiles, templates -----------------------------------------------------------------

NAME_PIECES = st.sampled_from(["llava", "a", "..", ".", "/", ":", "latest", "registry.ollama.ai", "library", "%2e",
                               "\\", "\x00", " ", "-", "_", "http://", "x" * 300, "ü", "7b", "@sha256:"])  # fmt: skip


def test_parse_name(record_property):
    """parse_name on random text and on joined pieces (dots, slashes, colons, NUL, URLs, long parts): a name or InvalidRequest; a parsed name's store path parts never escape the store."""
    @settings(max_examples=600, **FAST)
    @given(name=st.one_of(st.text(max_size=80), st.lists(NAME_PIECES, max_size=8).map("".join)))
    def fuzz(counts, name):
        try:
            parsed = parse_name(name)
        except InvalidRequest:
            counts["refused"] += 1
            return
        counts["parsed"] += 1
        for part in parsed.parts:  # what becomes a path under the store
            assert part and part not in (".", "..") and "/" not in part and "\\" not in part and "\x00" not in part

    run_counted(record_property, fuzz)


_MF_COMMAND = st.tuples(
    st.sampled_from(["FROM", "from", "PARAMETER", "SYSTEM", "TEMPLATE", "MESSAGE", "LICENSE", "ADAPTER", "DRAFT",
                     "REQUIRES", "# ", "", "RENDERER", "PARSER"]),
    st.sampled_from(["", " ", "  \t"]),
    st.one_of(st.sampled_from(["llava", "./model.gguf", "../../etc/passwd", "/dev/zero", "temperature 0.5",
                               "num_ctx -1", "num_ctx 4096", "stop <|end|>", "stop", "seed 1e400", "top_k abc",
                               "top_k 40", "user hi", "assistant ok", "wizard hi", '"""multi\nline"""', '"""unclosed',
                               '"quoted"', "{{ .Prompt }}", "{{ range }}", "{{", "~/x.gguf", "you are brief"]),
              st.text(max_size=40)),
).map("".join)
MODELFILE_LINE = st.one_of(_MF_COMMAND, _MF_COMMAND, _MF_COMMAND, st.text(max_size=60))  # fmt: skip


def test_parse_modelfile(record_property, tmp_path):
    """parse_modelfile on lines of its commands (FROM names and paths, PARAMETER values out of range, MESSAGE roles, unclosed triple quotes, templates) and random text."""
    @settings(max_examples=400, **FAST)
    @given(text=st.tuples(st.sampled_from(["", "FROM llava\n"]), st.lists(MODELFILE_LINE, max_size=6).map("\n".join)).map("".join))
    def fuzz(counts, text):
        started = time.monotonic()
        try:
            parse_modelfile(text, base=tmp_path)
            counts["parsed"] += 1
        except InvalidRequest as exc:
            assert str(exc)
            counts["refused"] += 1
        assert time.monotonic() - started < EXAMPLE_SECONDS

    run_counted(record_property, fuzz)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _writable(text: str) -> bool:
    """The Modelfile format has no escapes: a value with \"\"\" at a line's end cannot be written."""
    return not any(line.rstrip().endswith('"""') for line in _lines(text).split("\n")[:-1])


MF_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40).filter(_writable)


def test_modelfile_round_trip(record_property):
    """to_modelfile (``show --modelfile``) read back by parse_modelfile: the same SYSTEM, MESSAGE, stop
    and LICENSE for any text (line ends as \\n); the regression test for values holding a bare \\r,
    once written unquoted and read back as two lines."""

    @settings(max_examples=400, **FAST)
    @given(system=MF_TEXT, content=MF_TEXT, stop=MF_TEXT, license=MF_TEXT)
    def fuzz(counts, system, content, stop, license):
        manifest = ModelManifest(name="x", engine="echo", info=ModelInfo(name="x", engine="echo", license=license),
                                 system=system, messages=[{"role": "user", "content": content}],
                                 parameters={"stop": [stop]} if stop else {})  # fmt: skip
        parsed = parse_modelfile(to_modelfile(manifest), base="/nonexistent")
        assert (parsed.system or "") == _lines(system)
        assert parsed.messages == [{"role": "user", "content": _lines(content)}]
        assert parsed.parameters.get("stop", [""]) == [_lines(stop)]
        assert "\n".join(parsed.license) == _lines(license)
        counts["round trips"] += 1

    run_counted(record_property, fuzz)


def test_a_bare_carriage_return_is_quoted():
    manifest = ModelManifest(name="x", engine="echo", info=ModelInfo(name="x", engine="echo", license="0\r0"))
    assert parse_modelfile(to_modelfile(manifest), base="/nonexistent").license == ["0\n0"]


TEMPLATE_PIECES = st.sampled_from([
    "{{", "}}", "{{-", "-}}", " ", ".Prompt", ".System", ".Messages", ".Response", ".Tools", ".", "$", "$x", ":=", "=",
    "range", "if", "else", "end", "with", "define", "template", "block", "break", "continue", "and", "or", "not",
    "len", "index", "slice", "json", "eq", "ne", "lt", "printf", "print", "html", "call", "|", "(", ")", '"s"',
    "`raw`", "1", "-1", "1e9", "0x10", "nil", "true", ".Role", ".Content", ".Images", "$i, $m", "/*", "*/", "hi\n",
    "'c'", "\\",
])  # fmt: skip
VALUES = {"Prompt": "hi", "System": "be brief", "Response": "", "Tools": [], "Think": False,
          "Messages": [{"Role": "system", "Content": "s"}, {"Role": "user", "Content": "u", "Images": ["[img-0]"]}]}  # fmt: skip


def test_template_parse_and_render(record_property):
    """Template.parse(...).render(...) on Go template fragments (actions, range/if/with/define, pipes, functions, variables) joined at random, and random text."""
    @settings(max_examples=500, **FAST)
    @given(text=st.one_of(st.lists(TEMPLATE_PIECES, max_size=30).map("".join), st.text(max_size=80)))
    def fuzz(counts, text):
        started = time.monotonic()
        try:
            out = Template.parse(text).render(VALUES)
            assert isinstance(out, str)
            counts["rendered"] += 1
        except TemplateError as exc:
            assert str(exc)
            counts["refused"] += 1
        assert time.monotonic() - started < EXAMPLE_SECONDS

    run_counted(record_property, fuzz)


# -- request bodies through the ASGI app ----------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
KEYS = ["model", "prompt", "messages", "images", "stream", "options", "format", "system", "template", "raw",
        "keep_alive", "context", "think", "tools", "suffix", "input", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "n", "stop", "seed", "response_format", "instructions", "role", "content",
        "type", "text", "image_url", "url", "source", "data", "media_type", "stream_options", "tool_choice"]  # fmt: skip
SMALL_PNG = corpus.encode(corpus.photo((8, 8)), "PNG")


@st.composite
def body(draw, route: str) -> dict:
    """The route's own valid body with keys replaced, added or removed, at any depth."""
    obj = json.loads(json.dumps(BASES[route]))
    for _ in range(draw(st.integers(1, 4))):
        target = obj
        while isinstance(target, (dict, list)) and target and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target))))
            if not isinstance(target[key], (dict, list)):
                break
            target = target[key]
        if isinstance(target, dict):
            key = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from(sorted(target) or ["model"])))
            if draw(st.integers(0, 4)) == 0:
                target.pop(key, None)
            else:
                target[key] = draw(JSON)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(JSON)
    return obj


BASES = {route: IMAGE_ROUTES[route](SMALL_PNG) for route in available_routes()}
if "/v1/completions" in app_paths():
    BASES["/v1/completions"] = {"model": "llava", "prompt": "hi", "max_tokens": 16}
ROUTES = list(BASES)


@pytest.fixture(scope="module")
def client(echo_scheduler):
    with TestClient(create_app(echo_scheduler), raise_server_exceptions=False) as c:
        yield c


def check_response(route: str, response, counts: Counter) -> None:
    assert response.status_code < 500, (route, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert error_message(route, response), response.text
        counts[f"{response.status_code}"] += 1
    else:
        counts["200"] += 1


@pytest.mark.parametrize("route", ROUTES)
def test_request_bodies(route, client, record_property):
    """Each route's valid body (one image) with fields replaced by random JSON, added or removed at any depth, through the ASGI app (TestClient, echo model)."""
    @settings(max_examples=120, **FAST)
    @given(obj=body(route))
    def fuzz(counts, obj):
        response = client.post(route, json=obj)
        check_response(route, response, counts)

    run_counted(record_property, fuzz)


@pytest.mark.parametrize("route", ["/api/generate", "/api/chat", "/v1/chat/completions"])
def test_raw_bodies(route, client, record_property):
    """Random bytes and random JSON documents as whole bodies."""
    @settings(max_examples=60, **FAST)
    @given(raw=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode())))
    def fuzz(counts, raw):
        response = client.post(route, content=raw, headers={"Content-Type": "application/json"})
        check_response(route, response, counts)

    run_counted(record_property, fuzz)


def test_imgscribe_errors_are_the_documented_ones():
    """The errors the properties above allow are all ImgscribeError subclasses (4xx over HTTP)."""
    for cls in (InvalidImage, ImageTooLarge, InvalidRequest, TemplateError):
        assert issubclass(cls, ImgscribeError) and 400 <= cls.status < 500
