"""Engines by name. Each module is imported only when a model of that engine is loaded."""

from __future__ import annotations

import importlib

from ..errors import InvalidRequest
from .base import Engine, EngineSettings, Runner

_ENGINES = {
    "builtin": "imgscribe.engines.builtin",
    "echo": "imgscribe.engines.echo",
    "llamacpp": "imgscribe.engines.llamacpp",
    "remote": "imgscribe.engines.remote",
    "transformers": "imgscribe.engines.transformers",
}


def register(name: str, module: str) -> None:
    """Make an engine available by name; ``module`` must define ``ENGINE``."""
    _ENGINES[name] = module


def get_engine(name: str) -> Engine:
    try:
        module = _ENGINES[name]
    except KeyError:
        raise InvalidRequest(f"unknown engine {name!r} (known: {', '.join(sorted(_ENGINES))})") from None
    return importlib.import_module(module).ENGINE


def settings_of(name: str) -> type[EngineSettings] | None:
    """The engine's settings model; None for an engine that declares none (or is not known)."""
    try:
        engine = get_engine(name)
    except InvalidRequest:
        return None
    settings = getattr(engine, "settings", None)
    return settings if isinstance(settings, type) and issubclass(settings, EngineSettings) else None


__all__ = ["Engine", "EngineSettings", "Runner", "get_engine", "register", "settings_of"]
