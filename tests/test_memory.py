"""The memory estimate and the refusal to load what will not fit."""

from __future__ import annotations

import pytest

from imgscribe import memory
from imgscribe.errors import ImgscribeError
from imgscribe.memory import GB, InsufficientMemory, check_fits, estimate, estimate_params, kv_cache_bytes
from imgscribe.store.catalog import Arch, load


def test_bits_per_weight():
    assert memory.bits_per_weight("Q4_0") == 4.5
    assert memory.bits_per_weight("q8_0") == 8.5
    assert memory.bits_per_weight("F16") == 16
    with pytest.raises(KeyError):
        memory.bits_per_weight("Q9_X")


def test_kv_cache_formula():
    # Llama-2-7B: 32 layers, 32 KV heads, head size 128: 2 x 32 x 32 x 128 x 4096 x 2 bytes = 2 GiB
    arch = Arch(layers=32, kv_heads=32, head_dim=128)
    assert kv_cache_bytes(arch, 4096) == 2 * 32 * 32 * 128 * 4096 * 2 == 2**31
    # grouped-query attention (8 KV heads) is a quarter of that
    assert kv_cache_bytes(Arch(layers=32, kv_heads=8, head_dim=128), 4096) == 2**29
    assert kv_cache_bytes(arch, 0) == 0
    assert kv_cache_bytes(arch, 8192) == 2 * kv_cache_bytes(arch, 4096)


def test_kv_cache_sliding_window_layers_keep_only_the_window():
    full = Arch(layers=48, kv_heads=8, head_dim=256)
    swa = Arch(layers=48, kv_heads=8, head_dim=256, sliding_window=1024, global_every=6)
    per_layer_token = 2 * 8 * 256 * 2
    # 8 global layers hold 32768 tokens, 40 local layers hold 1024
    assert kv_cache_bytes(swa, 32768) == per_layer_token * (8 * 32768 + 40 * 1024)
    assert kv_cache_bytes(swa, 32768) < kv_cache_bytes(full, 32768) / 4
    assert kv_cache_bytes(swa, 512) == kv_cache_bytes(full, 512)  # shorter than the window


def test_kv_cache_fallback_without_layer_facts():
    per_b = load().policy["kv_fallback_bytes_per_token_per_billion_params"]
    assert kv_cache_bytes(None, 1000, text_params_b=7) == per_b * 7 * 1000


def test_estimate_llava_7b_matches_ollama():
    est = estimate("llava")  # llava:7b, Q4_0
    assert est.quant == "Q4_0" and est.engine == "llamacpp" and est.ctx == 4096
    assert 4.5 < (est.weights + est.vision) / GB < 4.9  # ollama.com lists 4.7 GB
    assert est.total == est.weights + est.vision + est.kv_cache + est.overhead
    assert 5 * GB < est.total < 6.5 * GB
    assert "KV cache" in est.summary() and "4096 tokens" in est.summary()


def test_estimate_depends_on_quant_context_and_engine():
    v = load().variant("qwen2.5-vl-7b")
    q4 = estimate(v, quant="Q4_K_M")
    q8 = estimate(v, quant="Q8_0")
    long = estimate(v, quant="Q4_K_M", ctx=32768)
    bf16 = estimate(v, engine="transformers")
    assert q4.total < q8.total < bf16.total
    assert long.kv_cache == 8 * q4.kv_cache and long.weights == q4.weights
    assert bf16.quant == "BF16" and bf16.overhead > q4.overhead
    # a GGUF quantisation means nothing to transformers: BF16 is used
    assert estimate(v, quant="Q4_K_M", engine="transformers").quant == "BF16"
    # the vision tower stays in F16 whatever the text quantisation
    assert q4.vision == q8.vision == int(0.67e9 * 2)


def test_context_is_capped_by_the_model():
    assert estimate("moondream").ctx == 2048


def test_remote_needs_no_local_memory():
    est = estimate("pixtral-large")
    assert est.engine == "remote" and est.total == 0


def test_mixture_of_experts_reads_only_active_weights_per_token():
    est = estimate("llama4:scout")
    assert est.weights > 60 * GB
    assert est.per_token_read < est.weights / 4


def test_estimate_params_for_models_outside_the_catalog():
    est = estimate_params(7.0, quant="Q4_K_M", ctx=4096, vision_params_b=0.3, name="my-import")
    assert est.name == "my-import" and est.kv_cache > 0
    assert any("approximated" in n for n in est.notes)
    with pytest.raises(KeyError):
        estimate("not-in-the-catalog")


def test_budgets_keep_a_reserve():
    assert memory.ram_budget(8 * GB) == int(6.5 * GB)  # at least 1.5 GB kept
    assert memory.ram_budget(32 * GB) == int(32 * GB * 0.85)  # 15 % kept
    assert memory.vram_budget(0) == 0
    assert 22 * GB < memory.vram_budget(24 * GB) < 24 * GB


def test_check_fits_passes_when_it_fits():
    est = estimate("llava")
    assert check_fits(est, est.total) is None
    assert check_fits(est, 100 * GB) is None


def test_check_fits_refuses_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    est = estimate("llava:13b")
    with pytest.raises(InsufficientMemory) as info:
        check_fits(est, 6 * GB, where="RAM")
    err = info.value
    assert isinstance(err, ImgscribeError) and err.status == 500
    message = str(err)
    assert "llava-1.6-vicuna-13b" in message
    assert f"{est.total / GB:.1f} GB" in message and "6.0 GB" in message
    assert "IMGSCRIBE_IGNORE_MEMORY=1" in message and "--force" in message
    assert err.estimate is est and err.available == 6 * GB and err.where == "RAM"


def test_check_fits_override_returns_a_warning(monkeypatch):
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    est = estimate("llava:34b")
    warning = check_fits(est, 1 * GB, override=True)
    assert warning and "anyway" in warning
    with pytest.raises(InsufficientMemory):
        check_fits(est, 1 * GB, override=False)


def test_check_fits_override_from_the_environment(monkeypatch):
    est = estimate("llava:34b")
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "1")
    assert "anyway" in check_fits(est, 1 * GB)
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "0")
    with pytest.raises(InsufficientMemory):
        check_fits(est, 1 * GB)
    # an explicit argument wins over the environment
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "1")
    with pytest.raises(InsufficientMemory):
        check_fits(est, 1 * GB, override=False)


# -- the check the scheduler makes before every load ----------------------------------------------

from imgscribe.memory import InsufficientMemory as _Insufficient  # noqa: E402
from imgscribe.memory import check_manifest, estimate_manifest  # noqa: E402
from imgscribe.types import ModelInfo, ModelManifest  # noqa: E402


def _manifest(engine="transformers", size=2_000_000_000, params="1B", name="mine:latest"):
    info = ModelInfo(name=name, engine=engine, parameter_size=params, size=size, context_length=4096)
    return ModelManifest(name=name, engine=engine, files={"model": "/nowhere"}, info=info)


def test_manifest_estimate_counts_files_kv_cache_and_overhead():
    est = estimate_manifest(_manifest())
    assert est.weights == 2_000_000_000 and est.kv_cache > 0 and est.overhead > 0
    assert est.total > est.weights


def test_engines_without_local_weights_need_no_estimate():
    for engine in ("builtin", "echo", "remote"):
        assert estimate_manifest(_manifest(engine=engine)) is None
        assert check_manifest(_manifest(engine=engine), available=1) is None


def test_check_manifest_refuses_and_the_override_loads_anyway(monkeypatch):
    huge = _manifest(size=10**14, params="50000B")
    with pytest.raises(_Insufficient, match="IMGSCRIBE_IGNORE_MEMORY=1"):
        check_manifest(huge, available=8 * 10**9)
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "1")
    assert "loading anyway" in check_manifest(huge, available=8 * 10**9)
    assert check_manifest(_manifest(size=10**6, params="1M"), available=8 * 10**9) is None


def test_the_scheduler_refuses_before_the_engine_loads(tmp_path, monkeypatch):
    from imgscribe.scheduler import Scheduler
    from imgscribe.store import Store

    store = Store(tmp_path)
    store.create("huge", _manifest(size=10**15, params="500000B", name="huge"))
    scheduler = Scheduler(store)
    with pytest.raises(_Insufficient, match="was not loaded"):
        scheduler.load("huge")
    assert scheduler.ps() == []
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "1")  # read when a scheduler is made
    with pytest.raises(Exception) as caught:
        Scheduler(store).load("huge")  # now the engine itself is reached
    assert not isinstance(caught.value, _Insufficient)


def test_force_is_an_override_the_scheduler_is_given_not_the_environment(tmp_path, monkeypatch):
    import os

    from imgscribe import config
    from imgscribe import scheduler as sched
    from imgscribe.config import settings

    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    store = sched.Store(tmp_path)
    store.create("huge", _manifest(size=10**15, params="500000B", name="huge"))
    with pytest.raises(Exception) as caught:
        sched.Scheduler(store, config=settings(ignore_memory=True)).load("huge")
    assert not isinstance(caught.value, _Insufficient)
    monkeypatch.setattr(config, "_overrides", {})
    sched.configure(ignore_memory=True)  # what the CLI's --force does
    assert sched.Scheduler(store).ignore_memory and "IMGSCRIBE_IGNORE_MEMORY" not in os.environ
    with pytest.raises(TypeError, match="not settings: forced"):
        sched.configure(forced=True)
    sched.configure(ignore_memory=None)  # a later command without --force
    assert not sched.Scheduler(store).ignore_memory
    monkeypatch.setenv("IMGSCRIBE_IGNORE_MEMORY", "1")  # the setting itself still counts
    assert sched.Scheduler(store).ignore_memory


def test_force_does_not_outlive_its_command(monkeypatch, tmp_path):
    from imgscribe import config
    from imgscribe import scheduler as sched
    from imgscribe.cli import main

    monkeypatch.setattr(config, "_overrides", {})
    monkeypatch.setenv("IMGSCRIBE_MODELS", str(tmp_path))
    monkeypatch.delenv("IMGSCRIBE_IGNORE_MEMORY", raising=False)
    assert main(["--force", "list"]) == 0 and sched.process_settings().ignore_memory
    assert main(["list"]) == 0 and not sched.process_settings().ignore_memory
