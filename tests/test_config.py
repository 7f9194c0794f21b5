import math

import pytest

from imgscribe.config import parse_duration, parse_host, settings


@pytest.mark.parametrize(
    "value, url",
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("example.com:8080", "http://example.com:8080"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:56789/path/", "https://example.com:56789/path"),
        ("[::1]:1234", "http://[::1]:1234"),
        ("localhost", "http://localhost:11434"),
    ],
)
def test_parse_host_like_ollama(value, url):
    assert parse_host(value).url == url


def test_wildcard_bind_means_loopback_for_clients():
    assert parse_host("0.0.0.0:9999").client_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize("bad", ["ftp://x", "host:notaport"])
def test_parse_host_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        parse_host(bad)


@pytest.mark.parametrize(
    "value, seconds",
    [(0, 0.0), (30, 30.0), ("30", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5s", 1.5)],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [-1, "-1", "-5m"])
def test_negative_duration_is_forever(value):
    assert parse_duration(value) == math.inf


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "m5", True])
def test_bad_duration_says_how(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_settings_read_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path))
    monkeypatch.setenv("IMGSCRIBE_KEEP_ALIVE", "10m")
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_PIXELS", "1234")
    s = settings()
    assert s.models_dir == tmp_path and s.keep_alive == 600 and s.max_image_pixels == 1234


def test_bad_integer_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("IMGSCRIBE_MAX_QUEUE", "lots")
    with pytest.raises(ValueError, match="IMGSCRIBE_MAX_QUEUE"):
        settings()
