"""Finding a catalog variant by any name a user types (see :mod:`.catalog` for the forms).

Every name a variant answers to (its Ollama tags, Hugging Face repositories, id and aliases, and
its family's id) is normalised into one index built once per catalog; a query is normalised the
same ways and tried in order: Ollama tag, Hugging Face repository, alias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .names import DEFAULT_HOST, DEFAULT_NAMESPACE, parse_name

if TYPE_CHECKING:
    from .catalog import Catalog, OllamaTag, Variant


@dataclass(frozen=True)
class Match:
    variant: Variant
    kind: str  # "ollama", "alias", "id", "hf-gguf", "hf-checkpoint", "family"
    quant: str | None  # a quantisation named in the request (an hf.co tag), else None
    query: str

    @property
    def ollama_tag(self) -> OllamaTag | None:
        """The Ollama tag asked for, when the query was one."""
        if self.kind != "ollama":
            return None
        key = _ollama_key(self.query)
        for tag in self.variant.ollama:
            if key in {tag.tag.lower(), *(t.lower() for t in tag.also)}:
                return tag
        return None

    @property
    def quantization(self) -> str:
        if self.quant:
            return self.quant
        if self.kind == "hf-checkpoint":
            return "BF16"  # a transformers checkpoint is loaded as it is published
        tag = self.ollama_tag
        if tag is not None:
            return tag.quant
        return self.variant.default_quant


def _norm_alias(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.strip().lower())


def _ollama_key(name: str) -> str | None:
    """``model:tag`` for names in Ollama's default library namespace, else None."""
    try:
        parsed = parse_name(name)
    except Exception:  # not a valid model name: not an Ollama tag
        return None
    if parsed.host != DEFAULT_HOST or parsed.namespace != DEFAULT_NAMESPACE:
        return None
    return f"{parsed.model}:{parsed.tag}".lower()


_HF_PREFIXES = ("https://", "http://", "huggingface.co/", "hf.co/", "www.huggingface.co/")


def _hf_key(name: str) -> tuple[str, str | None] | None:
    """``org/repo`` (lower case) and an optional ``:QUANT`` tag, for Hugging Face names."""
    text = name.strip()
    lowered = text.lower()
    stripped = True
    while stripped:
        stripped = False
        for prefix in _HF_PREFIXES:
            if lowered.startswith(prefix):
                text, lowered = text[len(prefix) :], lowered[len(prefix) :]
                stripped = True
    quant = None
    if ":" in text:
        text, quant = text.rsplit(":", 1)
        quant = quant.upper() if quant and quant.lower() != "latest" else None
    parts = [p for p in text.split("/") if p]
    if len(parts) < 2:
        return None
    return f"{parts[0]}/{parts[1]}".lower(), quant


def candidate_keys(name: str) -> list[tuple[str, str | None]]:
    keys: list[tuple[str, str | None]] = []
    ollama = _ollama_key(name)
    if ollama:
        keys.append((f"ollama:{ollama}", None))
    hf = _hf_key(name)
    if hf:
        keys.append((f"hf:{hf[0]}", hf[1]))
    alias = _norm_alias(name)
    keys.append((f"alias:{alias}", None))
    if alias.endswith(":latest"):
        keys.append((f"alias:{alias[: -len(':latest')]}", None))
    return keys


def build_index(catalog: Catalog) -> dict[str, tuple[str, str]]:
    index: dict[str, tuple[str, str]] = {}

    def add(key: str, kind: str, variant_id: str) -> None:
        previous = index.get(key)
        if previous is not None:
            if previous[1] != variant_id:
                raise ValueError(f"catalog.json: {key!r} names both {previous[1]} and {variant_id}")
            return  # the same variant twice (an id repeated as an alias): keep the first kind
        index[key] = (kind, variant_id)

    for model in catalog.models:
        for variant in model.variants:
            for tag in variant.ollama:
                for name in (tag.tag, *tag.also):
                    add(f"ollama:{name.lower()}", "ollama", variant.id)
            for kind, repo in (
                ("hf-checkpoint", variant.hf.checkpoint),
                ("hf-checkpoint", variant.hf.original),
                ("hf-gguf", variant.hf.gguf),
            ):
                if repo:
                    add(f"hf:{repo.lower()}", kind, variant.id)
            add(f"alias:{_norm_alias(variant.id)}", "id", variant.id)
            for alias in variant.aliases:
                add(f"alias:{_norm_alias(alias)}", "alias", variant.id)
    for model in catalog.models:  # families last: a variant alias wins over a family id
        key = f"alias:{_norm_alias(model.id)}"
        if key not in index:
            index[key] = ("family", model.default_variant)
    return index
