"""A model on another server (Ollama, imgscribe, or any OpenAI-compatible server) as a manifest for
the remote engine: ``imgscribe create NAME --remote URL [--remote-model NAME] [--api ollama|openai]``.

With ``check`` (the default) the server is asked, once, what it is and what it has:

- the dialect, when not given: ``GET /api/version`` answers on Ollama and imgscribe (``ollama``),
  ``GET /v1/models`` on OpenAI-compatible servers (``openai``);
- the remote model, when not given: for ``openai``, the server's only model; for ``ollama``, NAME;
- that the model exists, and (Ollama) its capabilities and details from ``/api/show``.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..config import parse_host
from ..errors import InvalidRequest, ModelNotFound, RemoteFailed
from ..types import ModelInfo, ModelManifest
from ..wire.transport import DeadlineClient

__all__ = ["manifest_for_remote", "normalise_url"]

_TIMEOUT = 10.0  # seconds for the whole check, every request of it together


def normalise_url(url: str) -> str:
    """``host:port``, ``http://host``, ``https://api.example.com/v1``... as a full base URL."""
    try:
        return parse_host(url).url.rstrip("/")
    except ValueError as exc:
        reason = str(exc).removeprefix("IMGSCRIBE_HOST: ")  # parse_host speaks of the setting; here it is a URL
        raise InvalidRequest(f"invalid remote URL {url!r}: {reason}") from None


def _get(client: httpx.Client, url: str) -> Any | None:
    try:
        r = client.get(url)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def _detect(client: httpx.Client, url: str) -> str:
    if isinstance(_get(client, url + "/api/version"), dict):
        return "ollama"
    from ..engines.remote import openai_endpoint

    if isinstance(_get(client, openai_endpoint(url, "models")), dict):
        return "openai"
    raise InvalidRequest(
        f"no Ollama or OpenAI-compatible server answers at {url} (tried /api/version and /v1/models); "
        "check the URL, or pass --api"
    )


def _openai_models(client: httpx.Client, url: str) -> list[str]:
    from ..engines.remote import openai_endpoint

    data = _get(client, openai_endpoint(url, "models"))
    if not isinstance(data, dict):
        raise InvalidRequest(f"{url} does not list its models (GET /v1/models failed)")
    return [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]


def manifest_for_remote(
    name: str,
    url: str,
    model: str | None = None,
    api: str | None = None,
    *,
    check: bool = True,
    headers: dict[str, str] | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
) -> ModelManifest:
    """A manifest for the remote engine. Raises InvalidRequest/ModelNotFound when ``check`` finds
    the server unreachable or without that model, RemoteFailed when it answers nonsense.

    Who may name which URL and key is the caller's to check (``server/remotes.py`` over the API)."""
    base = normalise_url(url)
    if api is not None and api not in ("ollama", "openai"):
        raise InvalidRequest(f"unknown API {api!r}: use 'ollama' or 'openai'")
    info = ModelInfo(name=name, engine="remote", family="remote", format="remote",
                     capabilities=["completion", "vision"])  # fmt: skip
    if check:
        request_headers = dict(headers or {})
        if api_key or api_key_env:
            from ..engines.remote import RemoteSettings, _headers

            request_headers.update(_headers(RemoteSettings(api_key=api_key, api_key_env=api_key_env)))
        # One total deadline for the whole check: a remote trickling bytes cannot hold it longer.
        with DeadlineClient(_TIMEOUT, timeout=_TIMEOUT, headers=request_headers, trust_env=False) as client:
            api = api or _detect(client, base)
            if api == "openai":
                models = _openai_models(client, base)
                if model is None:
                    if len(models) != 1:
                        listed = ", ".join(models[:10]) or "none"
                        raise InvalidRequest(f"{base} serves {len(models)} models ({listed}): choose one with --remote-model")
                    model = models[0]
                elif models and model not in models and f"{model}:latest" not in models:
                    raise ModelNotFound(model, f"on {base} (it serves: {', '.join(models[:10])})")
            else:
                model = model or name
                try:
                    r = client.post(base + "/api/show", json={"model": model})
                except httpx.HTTPError as exc:
                    raise InvalidRequest(f"cannot reach the remote server at {base}", detail=str(exc)) from None
                if r.status_code == 404:
                    raise ModelNotFound(model, f"on the remote server {base}")
                if r.status_code == 200:
                    _fill_from_show(info, _json_object(r, base))
    else:
        api = api or "ollama"
        model = model or name
    info.summary = f"{model} on {base} ({api} API)"
    info.description = (
        f"A remote model: requests go to {base} ({'Ollama' if api == 'ollama' else 'OpenAI-compatible'} API), "
        f"model {model!r}. It runs there, with that server's limits."
    )
    info.model_info = {**info.model_info, "remote.url": base, "remote.model": model, "remote.api": api}
    settings: dict[str, Any] = {"url": base, "model": model, "api": api}
    if headers:
        settings["headers"] = dict(headers)
    if api_key:
        settings["api_key"] = api_key
    if api_key_env:
        settings["api_key_env"] = api_key_env
    return ModelManifest(name=name, engine="remote", engine_settings=settings, info=info)


def _json_object(response: httpx.Response, base: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RemoteFailed(f"the remote server at {base} answered /api/show with something that is not a JSON object")
    return data


def _fill_from_show(info: ModelInfo, show: dict[str, Any]) -> None:
    """What Ollama's /api/show says, where it has the expected shape (anything else is left out)."""
    caps = show.get("capabilities")
    if isinstance(caps, list) and caps:
        info.capabilities = [str(c) for c in caps]
    details = show.get("details")
    details = details if isinstance(details, dict) else {}
    info.family = str(details.get("family") or info.family)
    families = details.get("families")
    info.families = [str(f) for f in families] if isinstance(families, list) else []
    info.parameter_size = str(details.get("parameter_size") or "")
    info.quantization_level = str(details.get("quantization_level") or "")
    model_info = show.get("model_info")
    if isinstance(model_info, dict):
        info.model_info = {str(k): v for k, v in model_info.items() if isinstance(v, (int, float, str))}
        for k, v in model_info.items():
            if str(k).endswith(".context_length") and isinstance(v, int) and not isinstance(v, bool):
                info.context_length = v
    info.is_vlm = "vision" in info.capabilities
