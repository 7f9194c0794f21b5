"""Ollama's wire format, byte by byte: what the official clients parse (notes/anchors.md 2 and 3)."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from imgscribe.errors import EngineFailed, ModelNotFound

from .conftest import add_echo, b64, image_bytes, noise_bytes

pytestmark = pytest.mark.timeout(60)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
METRICS = {
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
}


def lines(response: httpx.Response) -> list[dict]:
    text = response.text
    assert text.endswith("\n") and "\n\n" not in text, "NDJSON: one object per line, no blank lines"
    return [json.loads(line) for line in text.splitlines()]


def test_root_and_version(server):
    root = httpx.get(server.url + "/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert httpx.head(server.url + "/").status_code == 200
    assert httpx.get(server.url + "/api/version").json()["version"]


def test_generate_streams_ndjson_with_metrics_only_at_the_end(server):
    png = image_bytes()
    r = httpx.post(
        server.url + "/api/generate",
        json={"model": "llava", "prompt": "What is in this picture?", "images": [b64(png)]},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    objs = lines(r)
    *parts, final = objs
    assert parts and all(o["done"] is False and o["model"] == "llava" for o in parts)
    assert all(not METRICS & o.keys() for o in parts), "metrics only on the final object"
    assert all(RFC3339_UTC.match(o["created_at"]) for o in objs)
    assert final["done"] is True and final["done_reason"] == "stop" and final["response"] == ""
    assert {"total_duration", "prompt_eval_count", "eval_count", "eval_duration"} <= final.keys()
    assert final["image_encode_duration"] > 0
    text = "".join(o["response"] for o in parts)
    assert text.startswith("echo: What is in this picture? | 1 image(s): 64x48")
    assert hashlib.sha256(png).hexdigest()[:12] in text


def test_generate_stream_false_is_one_object(server):
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "hi there", "stream": False})
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["response"] == "echo: hi there | 0 image(s): none"
    assert body["done"] is True and body["eval_count"] == 7
    assert body["total_duration"] >= body["eval_duration"]


def test_chat_every_chunk_has_a_role(server):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "USER", "content": "look", "images": [b64(image_bytes())]},
    ]
    r = httpx.post(server.url + "/api/chat", json={"model": "llava", "messages": messages})
    objs = lines(r)
    assert all(o["message"]["role"] == "assistant" for o in objs)
    assert objs[-1]["message"]["content"] == "" and objs[-1]["done"] is True
    assert "".join(o["message"]["content"] for o in objs).startswith("echo: look | 1 image(s)")


def test_system_on_generate_is_not_part_of_the_prompt(server):
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "p", "system": "s", "stream": False})
    assert r.json()["response"].startswith("echo: p |")


def test_options_honoured_and_unknown_ones_ignored(server):
    body = {"model": "llava", "prompt": "a b c d e f", "stream": False,
            "options": {"num_predict": 3, "temperature": 0.1, "seed": 7, "mirostat": 2, "numa": True}}  # fmt: skip
    r = httpx.post(server.url + "/api/generate", json=body)
    assert r.status_code == 200
    assert r.json()["done_reason"] == "length" and r.json()["eval_count"] == 3
    body["options"] = {"stop": ["c d"]}
    assert r.json()["response"]
    r = httpx.post(server.url + "/api/generate", json=body)
    assert r.json()["response"] == "echo: a b "


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ({"prompt": "x"}, 400, "model is required"),
        ({"model": "llava", "prompt": "x", "images": ["not base64!"]}, 400, "invalid base64"),
        ({"model": "llava", "prompt": "x", "format": "yaml"}, 400, 'invalid format: "yaml"'),
        ({"model": "llava", "prompt": "x", "format": {"type": 12}}, 400, "not a valid JSON Schema"),
        ({"model": "llava", "prompt": "x", "keep_alive": "soon"}, 400, "keep_alive"),
        ({"model": "llava", "prompt": "x", "keep_alive": [1]}, 400, "keep_alive"),
        (
            {"model": "llava", "prompt": "x", "options": {"temperature": "hot"}},
            400,
            'option "temperature" must be of type float',
        ),
        (
            {"model": "llava", "prompt": "x", "options": {"num_predict": "many"}},
            400,
            'option "num_predict" must be of type integer',
        ),
        ({"model": "llava", "prompt": "x", "think": True}, 400, '"llava" does not support thinking'),
        ({"model": "llava", "prompt": "x", "raw": True, "system": "s"}, 400, "raw mode does not support"),
        ({"model": "llava", "prompt": "x", "top_logprobs": 50}, 400, "top_logprobs must be between 0 and 20"),
        ({"model": "echo-text", "prompt": "x", "images": [b64(image_bytes())]}, 400, "does not support images"),
        ({"model": "../../etc", "prompt": "x"}, 400, "invalid model name"),
    ],
)
def test_generate_errors(server, body, status, message):
    r = httpx.post(server.url + "/api/generate", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert set(r.json()) == {"error"}


def test_malformed_and_missing_bodies_are_400(server):
    for content in (b"", b"{not json", b"[1, 2]"):
        r = httpx.post(server.url + "/api/chat", content=content)
        assert r.status_code == 400 and r.json()["error"]
    r = httpx.post(server.url + "/api/chat", json={"model": "llava", "messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400 and "invalid role" in r.json()["error"]
    r = httpx.post(server.url + "/api/chat", json={"model": "llava", "messages": "hello"})
    assert r.status_code == 400 and "messages" in r.json()["error"]


def test_wrong_method_and_unknown_path(server):
    assert httpx.get(server.url + "/api/generate").status_code == 405
    r = httpx.get(server.url + "/api/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_data_uri_in_images_is_accepted(server):
    uri = "data:image/png;base64," + b64(image_bytes())
    r = httpx.post(
        server.url + "/api/generate", json={"model": "llava", "prompt": "x", "images": [uri], "stream": False}
    )
    assert r.status_code == 200 and "1 image(s)" in r.json()["response"]


def test_a_path_is_never_read_from_the_servers_disk(server, art):
    r = httpx.post(server.url + "/api/generate", json={"model": "llava", "prompt": "x", "images": [str(art)]})
    assert r.status_code == 400


def test_oversized_image_is_413_naming_the_limit(store, monkeypatch):
    from imgscribe.scheduler import Scheduler

    from .conftest import live_server

    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_BYTES", "1000")
    scheduler = Scheduler(store)
    try:
        with live_server(scheduler) as server:
            r = httpx.post(
                server.url + "/api/generate", json={"model": "llava", "prompt": "x", "images": [b64(noise_bytes())]}
            )
            assert r.status_code == 413 and "IMGSCRIBE_MAX_IMAGE_BYTES" in r.json()["error"]
            r = httpx.post(server.url + "/api/generate", content=b"x" * 10_000_000)
            assert r.status_code == 413 and "IMGSCRIBE_MAX_IMAGE_BYTES" in r.json()["error"]
    finally:
        scheduler.close()


def test_format_json_and_schema(server):
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    for format in ("json", schema):
        r = httpx.post(
            server.url + "/api/generate", json={"model": "llava", "prompt": "q", "format": format, "stream": False}
        )
        assert json.loads(r.json()["response"])["prompt"] == "q"


def test_empty_prompt_loads_and_keep_alive_zero_unloads(server):
    r = httpx.post(server.url + "/api/generate", json={"model": "echo-test"})
    body = r.json()
    assert r.status_code == 200 and body["done"] is True and body["done_reason"] == "load" and body["response"] == ""
    assert [m["name"] for m in httpx.get(server.url + "/api/ps").json()["models"]] == ["echo-test:latest"]
    r = httpx.post(server.url + "/api/chat", json={"model": "echo-test", "messages": [], "keep_alive": 0})
    assert r.json()["done_reason"] == "unload" and r.json()["message"]["role"] == "assistant"
    assert httpx.get(server.url + "/api/ps").json()["models"] == []
    assert httpx.post(server.url + "/api/generate", json={"model": "nope"}).status_code == 404


def test_keep_alive_zero_unloads_after_the_answer(server):
    r = httpx.post(
        server.url + "/api/generate", json={"model": "llava", "prompt": "x", "keep_alive": 0, "stream": False}
    )
    assert r.status_code == 200
    assert httpx.get(server.url + "/api/ps").json()["models"] == []


def test_keep_alive_as_duration_shows_in_ps(server):
    httpx.post(
        server.url + "/api/generate", json={"model": "llava", "prompt": "x", "keep_alive": "1h", "stream": False}
    )
    (row,) = httpx.get(server.url + "/api/ps").json()["models"]
    assert row["name"] == "llava:latest" and row["size"] > 0 and "details" in row
    assert RFC3339_UTC.match(row["expires_at"])
    httpx.post(server.url + "/api/generate", json={"model": "llava", "keep_alive": -1})
    forever = httpx.get(server.url + "/api/ps").json()["models"][0]["expires_at"]
    assert RFC3339_UTC.match(forever) and int(forever[:4]) > 2200  # as Ollama: now + Go's largest duration


def test_tags_show_and_management(server, store):
    tags = httpx.get(server.url + "/api/tags").json()["models"]
    names = [m["name"] for m in tags]
    assert "llava:latest" in names and "echo-text:latest" in names
    llava = tags[names.index("llava:latest")]
    assert llava["details"]["family"] == "echo" and llava["digest"] and llava["modified_at"]

    show = httpx.post(server.url + "/api/show", json={"model": "llava"}).json()
    assert "vision" in show["capabilities"] and "model_info" in show and show["details"]["family"] == "echo"
    assert httpx.post(server.url + "/api/show", json={"name": "nope"}).status_code == 404

    assert (
        httpx.post(server.url + "/api/copy", json={"source": "llava", "destination": "mine/llava:v2"}).status_code
        == 200
    )
    assert store.exists("mine/llava:v2")
    assert httpx.post(server.url + "/api/copy", json={"source": "nope", "destination": "x"}).status_code == 404
    r = httpx.request("DELETE", server.url + "/api/delete", json={"model": "mine/llava:v2"})
    assert r.status_code == 200 and not store.exists("mine/llava:v2")
    assert httpx.request("DELETE", server.url + "/api/delete", json={"model": "mine/llava:v2"}).status_code == 404


def test_create_from_an_existing_model(server, store):
    r = httpx.post(
        server.url + "/api/create",
        json={"model": "short", "from": "llava", "parameters": {"num_predict": 2}, "system": "terse"},
    )
    assert [o["status"] for o in lines(r)][-1] == "success"
    r = httpx.post(server.url + "/api/generate", json={"model": "short", "prompt": "a b c", "stream": False})
    assert r.json()["eval_count"] == 2
    assert httpx.post(server.url + "/api/show", json={"model": "short"}).json()["system"] == "terse"
    r = httpx.post(server.url + "/api/create", json={"model": "x", "files": {"a.gguf": "sha256:00"}})
    assert r.status_code == 400 and "invalid digest" in r.json()["error"]  # files: see test_blobs_create.py


PROGRESS = [
    {"status": "pulling manifest"},
    {"status": "pulling 0123456789ab", "digest": "sha256:0123456789ab", "total": 10, "completed": 5},
    {"status": "success"},
]


def fake_pull(fail_at: int | None = None):
    """Stands in for Store.pull: tests never touch a registry."""

    def pull(name, insecure=False, cancel=None):
        for i, item in enumerate(PROGRESS):
            if i == fail_at:
                raise ModelNotFound(name) if i == 0 else EngineFailed("connection reset")
            yield item

    return pull


def test_pull_streams_the_stores_progress(server, store, monkeypatch):
    monkeypatch.setattr(store, "pull", fake_pull())
    assert lines(httpx.post(server.url + "/api/pull", json={"model": "llava:13b"})) == PROGRESS
    assert httpx.post(server.url + "/api/pull", json={"model": "llava:13b", "stream": False}).json() == {
        "status": "success"
    }
    monkeypatch.setattr(store, "pull", fake_pull(fail_at=0))
    r = httpx.post(server.url + "/api/pull", json={"name": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    monkeypatch.setattr(store, "pull", fake_pull(fail_at=2))
    assert lines(httpx.post(server.url + "/api/pull", json={"model": "x"}))[-1] == {"error": "connection reset"}


def test_mid_stream_error_is_the_last_line(server, store):
    add_echo(store, "crashy", fail_after=3)
    r = httpx.post(
        server.url + "/api/chat", json={"model": "crashy", "messages": [{"role": "user", "content": "a b c d e"}]}
    )
    assert r.status_code == 200
    objs = lines(r)
    assert len(objs) == 4 and "simulated failure" in objs[-1]["error"]
    r = httpx.post(
        server.url + "/api/chat",
        json={"model": "crashy", "messages": [{"role": "user", "content": "a"}], "stream": False},
    )
    assert r.status_code == 500 and "simulated failure" in r.json()["error"]


def test_load_failure_is_500_with_the_reason(server, store):
    add_echo(store, "broken", fail_load=True)
    r = httpx.post(server.url + "/api/generate", json={"model": "broken", "prompt": "x"})
    assert r.status_code == 500 and "simulated load failure" in r.json()["error"]


def test_health_and_metrics(server):
    httpx.post(
        server.url + "/api/generate",
        json={"model": "llava", "prompt": "x y", "images": [b64(image_bytes())], "stream": False},
    )
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    text = httpx.get(server.url + "/metrics").text
    assert 'imgscribe_requests_total{model="llava:latest",route="/api/generate",status="200"} 1.0' in text
    assert 'imgscribe_images_total{model="llava:latest"} 1.0' in text
    assert 'imgscribe_tokens_total{kind="completion",model="llava:latest"}' in text
    assert "imgscribe_request_duration_seconds_bucket" in text
    assert "imgscribe_queue_depth 0.0" in text and "imgscribe_loaded_models 1.0" in text


def test_cors_allows_local_pages(server):
    r = httpx.options(
        server.url + "/api/chat", headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    )
    assert r.headers.get("access-control-allow-origin") == "http://localhost:3000"
    r = httpx.options(
        server.url + "/api/chat", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_endpoints_this_server_does_not_offer_say_so(server):
    r = httpx.post(server.url + "/api/embed", json={"model": "llava", "input": "x"})
    assert r.status_code == 400 and "does not support embeddings" in r.json()["error"]
    assert httpx.post(server.url + "/api/embeddings", json={"model": "nope", "prompt": "x"}).status_code == 404
    r = httpx.post(server.url + "/v1/embeddings", json={"model": "llava", "input": "x"})
    assert r.status_code == 400 and "does not support embeddings" in r.json()["error"]["message"]
    assert httpx.post(server.url + "/api/push", json={"model": "llava"}).status_code == 501
    r = httpx.post(server.url + "/api/blobs/sha256:" + "0" * 64, content=b"x")
    assert r.status_code == 400 and "digest mismatch" in r.json()["error"]  # uploads: see test_blobs_create.py


def test_dns_rebinding_is_refused_on_loopback(server):
    assert httpx.get(server.url + "/api/version", headers={"Host": "evil.example"}).status_code == 403
    for host in ("localhost", "127.0.0.1", "[::1]", "imgscribe.localhost", "nas.local", "10.0.0.5"):
        assert httpx.get(server.url + "/api/version", headers={"Host": f"{host}:11434"}).status_code == 200, host
