"""How much memory a model needs, and a refusal when it will not fit.

An estimate, made before loading, so that imgscribe says "this needs 12 GB and 6 GB are free"
instead of swapping for minutes or being killed by the kernel (Ollama answers the same way:
"model requires more system memory ... than is available").

    total = weights + vision tower + KV cache + overhead

- **weights**: parameters x bits per weight of the quantisation / 8. llama.cpp holds only the text
  decoder in the GGUF (``text_params_b``); transformers loads everything but the vision tower
  here (``params_b - vision_params_b``, which includes audio encoders and adapters).
- **vision tower** (encoder + projector, llama.cpp's ``mmproj``): kept in F16/BF16 by both
  engines, so ``vision_params_b x 2`` bytes whatever the quantisation of the text weights.
- **KV cache**: ``2 (K and V) x layers x kv_heads x head_dim x context x bytes per element``
  (F16: 2 bytes), with the layers and heads from the catalog. Models with sliding-window layers
  (Gemma 3: 5 local layers with a 1024-token window for each global one) keep only the window on
  the local layers. A model without those facts uses a documented approximation:
  ``policy.kv_fallback_bytes_per_token_per_billion_params`` (64 KiB per token per billion
  parameters, about what a 7B model without grouped-query attention needs; an over-estimate for
  modern GQA models, which is the safe side).
- **overhead**: compute buffers, image embeddings and the process itself:
  ``base_gb + fraction x (weights + vision)`` per engine (catalog ``policy.overhead``).

Every constant lives in ``store/catalog.json`` (``quantizations`` and ``policy``), each marked as an
estimate. Sizes are decimal gigabytes (10^9 bytes), as Ollama and Hugging Face show them.

Overriding: ``check_fits(..., override=True)``, the CLI's ``--force`` or ``IMGSCRIBE_IGNORE_MEMORY=1``.

:class:`InsufficientMemory` maps to HTTP 500, as Ollama answers this case (its scheduler error
becomes a 500 with the message), so Ollama clients see what they expect; 507 "Insufficient
Storage" is a WebDAV code about storage and clients do not expect it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ImgscribeError
from .types import ModelManifest

if TYPE_CHECKING:
    from .store.catalog import Arch, Catalog, Variant

__all__ = [
    "GB",
    "InsufficientMemory",
    "MemoryEstimate",
    "bits_per_weight",
    "check_fits",
    "check_manifest",
    "estimate_manifest",
    "default_ctx",
    "estimate",
    "estimate_params",
    "kv_cache_bytes",
    "ram_budget",
    "vram_budget",
    "OVERRIDE_ENV",
    "OVERRIDE_FLAG",
]

GB = 1_000_000_000
OVERRIDE_ENV = "IMGSCRIBE_IGNORE_MEMORY"
OVERRIDE_FLAG = "--force"


class InsufficientMemory(ImgscribeError):
    """The model would not fit in the memory available; the message says how to override."""

    status = 500

    def __init__(self, message: str, estimate: MemoryEstimate | None = None, available: int = 0, where: str = ""):
        super().__init__(message)
        self.estimate = estimate
        self.available = available
        self.where = where


def _catalog(catalog: Catalog | None) -> Catalog:
    if catalog is not None:
        return catalog
    from .store import catalog as catalog_module

    return catalog_module.load()


def gb(n: float) -> str:
    """Bytes as '5.6 GB' (decimal)."""
    value = n / GB
    if value >= 100:
        return f"{value:.0f} GB"
    if value >= 0.1 or value == 0:
        return f"{value:.1f} GB"
    return f"{n / 1_000_000:.0f} MB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs when loaded (an estimate, see the module documentation)."""

    name: str
    engine: str
    quant: str
    ctx: int
    weights: int
    vision: int
    kv_cache: int
    overhead: int
    #: bytes read from memory per decoded token (weights of the active experts + KV cache);
    #: what decode speed depends on
    per_token_read: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return self.weights + self.vision + self.kv_cache + self.overhead

    def summary(self) -> str:
        return (
            f"{gb(self.total)} = weights {gb(self.weights)} + vision {gb(self.vision)}"
            f" + KV cache {gb(self.kv_cache)} ({self.ctx} tokens) + overhead {gb(self.overhead)}"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = self.total
        data["notes"] = list(self.notes)
        return data


def default_ctx(catalog: Catalog | None = None) -> int:
    return int(_catalog(catalog).policy.get("default_ctx", 4096))


def bits_per_weight(quant: str, catalog: Catalog | None = None) -> float:
    return _catalog(catalog).bits_per_weight(quant)


def kv_cache_bytes(
    arch: Arch | None,
    ctx: int,
    *,
    text_params_b: float = 0.0,
    bytes_per_element: float = 2,
    catalog: Catalog | None = None,
) -> int:
    """K and V for ``ctx`` tokens: 2 x layers x kv_heads x head_dim x ctx x bytes per element."""
    if ctx <= 0:
        return 0
    if arch is None:
        per_b = _catalog(catalog).policy.get("kv_fallback_bytes_per_token_per_billion_params", 65536)
        return int(per_b * text_params_b * ctx)
    per_layer_token = 2 * arch.kv_heads * arch.head_dim * bytes_per_element
    if arch.sliding_window and arch.global_every:
        n_global = arch.layers // arch.global_every
        n_local = arch.layers - n_global
        tokens = n_global * ctx + n_local * min(ctx, arch.sliding_window)
    else:
        tokens = arch.layers * ctx
    return int(per_layer_token * tokens)


def _engine_quant(engine: str, quant: str | None, default: str, catalog: Catalog) -> str:
    if quant is None:
        quant = default
    quant = quant.upper()
    known = catalog.quantizations.get(quant)
    if engine == "transformers" and (known is None or "transformers" not in known.engines):
        return "BF16"  # GGUF quantisations mean nothing to transformers
    if engine == "llamacpp" and known is not None and "llamacpp" not in known.engines:
        return "Q4_K_M"
    return quant


def estimate_params(
    params_b: float,
    *,
    quant: str,
    ctx: int | None = None,
    text_params_b: float | None = None,
    vision_params_b: float = 0.0,
    active_params_b: float | None = None,
    arch: Arch | None = None,
    engine: str = "llamacpp",
    name: str = "",
    catalog: Catalog | None = None,
) -> MemoryEstimate:
    """The estimate from bare facts: for models outside the catalog (imports, manifests)."""
    catalog = _catalog(catalog)
    policy = catalog.policy
    ctx = default_ctx(catalog) if ctx is None else ctx
    notes: list[str] = []
    if engine == "remote":
        return MemoryEstimate(name, engine, quant.upper(), ctx, 0, 0, 0, 0, 0, ("runs on another machine",))
    quant = _engine_quant(engine, quant, quant, catalog)
    bpw = catalog.bits_per_weight(quant)
    if text_params_b is None:
        text_params_b = max(params_b - vision_params_b, 0.0)
    loaded_b = text_params_b if engine == "llamacpp" else max(params_b - vision_params_b, text_params_b)
    weights = int(loaded_b * 1e9 * bpw / 8)
    vision_dtype = str(policy.get("vision_dtype", "F16"))
    vision = int(vision_params_b * 1e9 * catalog.bits_per_weight(vision_dtype) / 8)
    kv_elem = float(policy.get("kv_bytes_per_element", 2))
    kv = kv_cache_bytes(arch, ctx, text_params_b=text_params_b, bytes_per_element=kv_elem, catalog=catalog)
    if arch is None:
        notes.append("KV cache approximated from the parameter count (no layer facts)")
    over = policy.get("overhead", {}).get(engine, {"base_gb": 0.5, "fraction_of_weights": 0.05})
    overhead = int(over["base_gb"] * GB + over["fraction_of_weights"] * (weights + vision))
    active_b = active_params_b or text_params_b
    per_token = int(min(active_b, loaded_b) * 1e9 * bpw / 8) + kv
    return MemoryEstimate(name, engine, quant, ctx, weights, vision, kv, overhead, per_token, tuple(notes))


def estimate(
    model: Variant | str,
    quant: str | None = None,
    ctx: int | None = None,
    engine: str | None = None,
    catalog: Catalog | None = None,
) -> MemoryEstimate:
    """Estimate for a catalog variant (or any name the catalog knows).

    ``quant`` defaults to the variant's (or the asked tag's) quantisation, ``ctx`` to the policy's
    default context capped at the model's context length, ``engine`` to the first local engine.
    """
    catalog = _catalog(catalog)
    if isinstance(model, str):
        match = catalog.lookup(model)
        if match is None:
            raise KeyError(f"{model!r} is not in the catalog; use estimate_params()")
        variant = match.variant
        quant = quant or match.quantization
    else:
        variant = model
    if engine is None:
        engine = variant.local_engines[0] if variant.local_engines else "remote"
    if ctx is None:
        ctx = min(default_ctx(catalog), variant.context_length)
    est = estimate_params(
        variant.params_b,
        quant=quant or variant.default_quant,
        ctx=ctx,
        text_params_b=variant.text_params_b,
        vision_params_b=variant.vision_params_b,
        active_params_b=variant.active_params_b,
        arch=variant.arch,
        engine=engine,
        name=variant.id,
        catalog=catalog,
    )
    if variant.vision_params_estimate:
        est = MemoryEstimate(**{**asdict(est), "notes": (*est.notes, "vision tower size is itself an estimate")})
    return est


def _reserve(total: int, key: str, catalog: Catalog | None) -> int:
    rule = _catalog(catalog).policy.get(key, {"min_gb": 1.0, "fraction": 0.1})
    return int(max(rule["min_gb"] * GB, rule["fraction"] * total))


def ram_budget(total: int, catalog: Catalog | None = None) -> int:
    """RAM a model may plan to use on a machine with ``total`` bytes (the OS reserve kept free)."""
    return max(int(total) - _reserve(total, "ram_reserve", catalog), 0)


def vram_budget(total: int, catalog: Catalog | None = None) -> int:
    """GPU memory a model may plan to use on a GPU with ``total`` bytes."""
    if total <= 0:
        return 0
    return max(int(total) - _reserve(total, "vram_reserve", catalog), 0)


def _override_from_settings() -> bool:
    from .config import settings

    return settings().ignore_memory


def check_fits(
    estimate: MemoryEstimate,
    available: int,
    *,
    override: bool | None = None,
    where: str = "RAM",
    hint: str = "",
) -> str | None:
    """Refuse to load what will not fit.

    ``available``: bytes the model may use now (free RAM, or free GPU memory). Raises
    :class:`InsufficientMemory` when ``estimate.total`` is larger, unless ``override`` (default:
    ``IMGSCRIBE_IGNORE_MEMORY``) is true; then returns a warning to show. Returns None when it fits.
    """
    if estimate.total <= available:
        return None
    if override is None:
        override = _override_from_settings()
    what = f"model '{estimate.name}'" if estimate.name else "the model"
    message = (
        f"{what} needs about {gb(estimate.total)} of {where} ({estimate.summary().split(' = ', 1)[1]},"
        f" {estimate.quant}, {estimate.engine}) but only {gb(available)} is available"
    )
    if override:
        return f"{message}; loading anyway because the memory check is overridden"
    advice = hint or "choose a smaller model or quantisation, lower num_ctx, or free memory"
    raise InsufficientMemory(
        f"{message}. To avoid swapping or being killed, it was not loaded: {advice}."
        f" To load it anyway, set {OVERRIDE_ENV}=1 (CLI: {OVERRIDE_FLAG}).",
        estimate,
        available,
        where,
    )


#: engines whose models need no estimate: tiny (builtin, echo) or on another machine (remote)
_NO_ESTIMATE = ("builtin", "echo", "remote")
_SIZE = re.compile(r"^\s*([\d.]+)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1e-9, "K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}


def _params_b(parameter_size: str) -> float:
    """'7.2B' -> 7.2, '400M' -> 0.4; 0 when unknown."""
    match = _SIZE.match(parameter_size or "")
    return float(match.group(1)) * _SCALE[match.group(2).upper()] if match else 0.0


def estimate_manifest(manifest: ModelManifest, catalog: Catalog | None = None) -> MemoryEstimate | None:
    """What loading ``manifest`` will take: from the catalog when it knows the model, else from
    the files' size on disk plus a KV cache for the context. None for engines that need none."""
    if manifest.engine in _NO_ESTIMATE:
        return None
    catalog = _catalog(catalog)
    if catalog.lookup(manifest.name) is not None and manifest.info.size == 0:
        return estimate(manifest.name, engine=manifest.engine, catalog=catalog)
    info = manifest.info
    ctx = min(default_ctx(catalog), info.context_length) if info.context_length else default_ctx(catalog)
    params = _params_b(info.parameter_size) or info.size / 2e9  # ~2 bytes a weight when unknown
    kv = kv_cache_bytes(None, ctx, text_params_b=params, catalog=catalog)
    over = catalog.policy.get("overhead", {}).get(manifest.engine, {"base_gb": 0.5, "fraction_of_weights": 0.05})
    overhead = int(over["base_gb"] * GB + over["fraction_of_weights"] * info.size)
    return MemoryEstimate(
        manifest.name, manifest.engine, info.quantization_level or "as stored", ctx,
        info.size, 0, kv, overhead, notes=("from the size of the files on disk",),
    )  # fmt: skip


def check_manifest(
    manifest: ModelManifest, available: int | None = None, *, override: bool | None = None
) -> str | None:
    """Refuse to load a model that will not fit in the RAM available now (see :func:`check_fits`,
    and its ``override``); a warning when the check is overridden, None when it fits or cannot be
    estimated."""
    est = estimate_manifest(manifest)
    if est is None:
        return None
    if available is None:
        from .hardware import probe_ram

        available = probe_ram()[1]
    if not available:
        return None  # unknown: do not guess
    return check_fits(est, available, override=override)
