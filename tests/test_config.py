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


@pytest.mark.parametrize("bad, why", [("ftp://x", "unsupported scheme 'ftp'"), ("host:notaport", "invalid port")])
def test_parse_host_rejects_nonsense(bad, why):
    with pytest.raises(ValueError, match=why):
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
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_settings_read_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path))
    monkeypatch.setenv("IMGSCRIBE_KEEP_ALIVE", "10m")
    monkeypatch.setenv("IMGSCRIBE_MAX_IMAGE_PIXELS", "1234")
    s = settings()
    assert s.models_dir == tmp_path and s.keep_alive == 600 and s.max_image_pixels == 1234


def test_bad_integer_setting_names_the_variable(monkeypatch):
    from imgscribe.config import ConfigError

    monkeypatch.setenv("IMGSCRIBE_MAX_QUEUE", "lots")
    with pytest.raises(ConfigError, match="IMGSCRIBE_MAX_QUEUE='lots'"):
        settings()


# -- the table of settings ------------------------------------------------------------------------

import re  # noqa: E402
from pathlib import Path  # noqa: E402

from imgscribe.cli import main  # noqa: E402
from imgscribe.config import TABLE, ConfigError, Settings  # noqa: E402

README = Path(__file__).parents[1] / "README.md"


def test_every_setting_has_a_row_and_every_row_a_field():
    assert sorted(row.field for row in TABLE) == sorted(Settings.__dataclass_fields__)
    assert len({row.name for row in TABLE}) == len(TABLE)


def test_the_readme_table_is_the_settings_table():
    rows = re.findall(r"^\| `(IMGSCRIBE_\w+)` \| (.*?) \| (.*) \|$", README.read_text(), re.MULTILINE)
    documented = {name: (default, meaning) for name, default, meaning in rows}
    assert list(documented) == [row.name for row in TABLE]
    for row in TABLE:
        default, meaning = documented[row.name]
        assert default == (f"`{row.default}`" if row.default else "–"), row.name
        assert meaning.startswith(row.help), row.name


@pytest.mark.parametrize("name, bad", [("IMGSCRIBE_URL_TIMEOUT", "abc"), ("IMGSCRIBE_MAX_QUEUE", "-3"),
                                       ("IMGSCRIBE_ALLOW_URLS", "maybe"), ("IMGSCRIBE_KEEP_ALIVE", "soon"),
                                       ("IMGSCRIBE_HOST", "ftp://x"), ("IMGSCRIBE_HF_ENDPOINT", "hub.local")])  # fmt: skip
def test_a_bad_value_names_the_variable_and_what_it_accepts(monkeypatch, name, bad):
    monkeypatch.setenv(name, bad)
    with pytest.raises(ConfigError, match=rf"^{name}='{re.escape(bad)}' is not valid: it accepts \w"):
        settings()


def test_a_bad_setting_is_a_usage_error_for_the_cli(monkeypatch, capsys):
    monkeypatch.setenv("IMGSCRIBE_URL_TIMEOUT", "abc")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "IMGSCRIBE_URL_TIMEOUT='abc' is not valid" in err and "unexpected" not in err


def test_settings_from_a_mapping_and_overrides(tmp_path):
    s = settings({"IMGSCRIBE_MODELS": str(tmp_path), "IMGSCRIBE_ORIGINS": "a, b,,"}, ignore_memory=True)
    assert s.models_dir == tmp_path and s.origins == ("a", "b") and s.ignore_memory is True
    assert settings({}).keep_alive == 300 and settings({"HF_TOKEN": "t"}).hf_token == "t"


def test_serve_help_prints_every_setting(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    main(["serve", "--help"])
    out = capsys.readouterr().out
    for row in TABLE:
        assert row.name in out


def test_num_parallel_is_interpreted_in_one_place():
    from imgscribe.config import PARALLEL_WHEN_UNSET, parallel_slots

    # an engine that asks how many slots to open (llama-server without num_parallel in its manifest)
    assert parallel_slots(1) == 1 and parallel_slots(8) == 8 and parallel_slots(0) == PARALLEL_WHEN_UNSET == 4
    # a runner that can take a number: at most IMGSCRIBE_NUM_PARALLEL of them, 0 means all of them
    assert parallel_slots(1, 4) == 1 and parallel_slots(8, 4) == 4 and parallel_slots(0, 6) == 6
    assert parallel_slots(0, 0) == 1 and parallel_slots(2, 0) == 1


def test_a_process_override_reaches_every_settings_of_the_environment(monkeypatch):
    """configure() (the CLI's --force, describe's slots) is seen by settings() itself, which the
    engines read (the llama.cpp runner's slots, budget.kv_allows), not only by the schedulers; an
    explicit mapping stays as given."""
    from imgscribe import config
    from imgscribe.scheduler import configure as scheduler_configure, process_settings

    monkeypatch.setattr(config, "_overrides", {})
    monkeypatch.delenv("IMGSCRIBE_NUM_PARALLEL", raising=False)
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    assert not config.chosen("num_parallel") and not config.chosen("ignore_memory")
    assert scheduler_configure is config.configure  # still importable from the scheduler
    config.configure(ignore_memory=True, num_parallel=3)
    assert settings().ignore_memory and settings().num_parallel == 3 and process_settings().num_parallel == 3
    assert settings(num_parallel=2).num_parallel == 2  # a given value wins over the process's
    assert settings({}).num_parallel == 1 and not settings({}).ignore_memory
    assert config.chosen("num_parallel")
    config.configure(num_parallel=None, ignore_memory=None)
    assert settings().num_parallel == 1 and not config.chosen("num_parallel")
    monkeypatch.setenv("IMGSCRIBE_NUM_PARALLEL", "1")  # set, even to its default: the user chose
    assert config.chosen("num_parallel")
    with pytest.raises(TypeError, match="not a setting: slots"):
        config.chosen("slots")
