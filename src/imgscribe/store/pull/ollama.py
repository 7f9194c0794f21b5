"""Pulling from Ollama's model registry (``registry.ollama.ai`` or any host that speaks its protocol).

The protocol (Ollama's ``server/images.go`` and ``download.go``), an OCI-style registry:

- ``GET /v2/<namespace>/<model>/manifests/<tag>`` with ``Accept:
  application/vnd.docker.distribution.manifest.v2+json`` gives ``{"schemaVersion": 2, "mediaType",
  "config": {digest, size, mediaType}, "layers": [...]}``; 404 means no such model or tag.
- ``GET /v2/<namespace>/<model>/blobs/<digest>`` gives a layer, usually through a redirect to a
  CDN; ``Range`` requests resume and parallelise it.
- Layers by media type: ``application/vnd.ollama.image.model`` (the GGUF), ``.projector`` (the
  vision projector, a GGUF), ``.template`` (a Go template), ``.params`` (JSON default options),
  ``.system``, ``.license``, ``.messages``, ``.adapter``. The config
  (``application/vnd.docker.container.image.v1+json``) says format, family and quantisation.
- A 401 with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` asks for a token from the
  realm (on the same host only, as Ollama insists); public models need none.

Before the big layers are fetched, the model layer's GGUF header (and the projector's) is read with
Range requests and judged (``inspect.py``): ``mllama`` and layouts nothing makes loadable are refused
there, naming what to pull instead. Layouts Ollama translates as it loads them (its single-file vision
models, old LLaVA projectors, Llama 3 stop tokens) are translated once after the download
(``store/translate``): the store keeps the translated files instead of the published blob, and the
manifest keeps Ollama's digests (``source.layers``, ``info.digest``) and what was changed.

The result is a llamacpp model: ``files = {"model": <model blob>, "projector": <projector blob>}``,
``parameters`` = the options of the params layer (only Ollama's option names: a registry cannot set
engine settings; other keys are dropped and logged), ``template`` = Ollama's Go template text (for
reference: the llamacpp engine formats prompts with the GGUF's own chat template), ``system`` from
its layer, ``info.license`` from the licence layer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from ...errors import InvalidRequest, ModelNotFound
from ...types import MODEL_PARAMETERS, ModelManifest
from .. import gc, translate
from ..manifests import Layer, model_options
from ..names import DEFAULT_HOST, ModelName
from .common import finish, forget, info_from_catalog, manifest_for_gguf_blobs
from .download import Downloader
from .errors import PullError
from .http import _Retry, check_response, new_client, transport_error
from .inspect import (
    Verdict,
    check_model,
    check_projector,
    llava_alternative,
    remote_header,
)
from .progress import Item, human_bytes

log = logging.getLogger("imgscribe.store")

__all__ = ["MEDIA_TYPES", "pull"]

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (MANIFEST_ACCEPT, "application/vnd.oci.image.manifest.v1+json")
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
PREFIX = "application/vnd.ollama.image."
#: media type -> role in the model
MEDIA_TYPES = {
    PREFIX + "model": "model",
    PREFIX + "projector": "projector",
    PREFIX + "adapter": "adapter",
    PREFIX + "template": "template",
    PREFIX + "params": "params",
    PREFIX + "system": "system",
    PREFIX + "license": "license",
    PREFIX + "messages": "messages",
}
_TEXT_ROLES = ("template", "params", "system", "license", "messages")
_SMALL = 4 * 1024 * 1024  # text layers larger than this are not read into the manifest


class Registry:
    """Requests to one registry for one repository, with Ollama's bearer-token dance."""

    def __init__(self, client: httpx.Client, base: str, name: ModelName):
        self.client = client
        self.base = base.rstrip("/")
        self.name = name
        self.repo = f"{name.namespace}/{name.model}"
        self.token: str | None = None

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "v2", self.repo, *parts])

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = dict(headers or {})
        for _ in range(2):
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            response = self._send(url, headers)
            if response.status_code == 401 and not self.token:
                self.token = self._authorize(response, url)
                continue
            return response
        return response

    def _send(self, url: str, headers: dict[str, str]) -> httpx.Response:
        for attempt in range(3):
            try:
                response = self.client.get(url, headers=headers)
                if response.status_code != 429 and response.status_code < 500:
                    return response
                if attempt == 2:
                    return response
            except httpx.TransportError as exc:
                if attempt == 2 or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise transport_error(exc, url) from None
        return response  # pragma: no cover

    def _authorize(self, response: httpx.Response, url: str) -> str:
        challenge = _challenge(response.headers.get("www-authenticate", ""))
        realm = challenge.get("realm", "")
        if not realm:
            raise PullError(f"{self.name.host} asks for credentials for {self.repo}, and imgscribe pulls anonymously")
        realm_url = httpx.URL(realm)
        if realm_url.host != httpx.URL(url).host:
            raise PullError(f"{self.name.host} sends its token request to another host ({realm_url.host}); refused")
        params = {k: v for k, v in challenge.items() if k in ("service", "scope")}
        try:
            answer = self.client.get(realm, params=params)
        except httpx.TransportError as exc:
            raise transport_error(exc, realm) from None
        if answer.status_code != 200:
            raise PullError(f"{self.name.host} refused access to {self.repo} ({answer.status_code}): it may be private")
        try:
            body = answer.json()
            return str(body.get("token") or body["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise PullError(f"{self.name.host} sent an unreadable token answer") from None


def _challenge(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def _registry_manifest(registry: Registry, asked: str) -> tuple[dict[str, Any], bytes]:
    name = registry.name
    response = registry.get(registry.url("manifests", name.tag), {"Accept": MANIFEST_ACCEPT})
    if response.status_code == 404:
        where = "Ollama's library" if name.host == DEFAULT_HOST else name.host
        hint = f"{where} has no model {registry.repo} with tag '{name.tag}'"
        if name.host == DEFAULT_HOST and name.namespace == "library":
            hint += f"; see the tags at https://ollama.com/library/{name.model}/tags"
        elif name.host == DEFAULT_HOST and asked.count("/") == 1:
            hint += f"; for a Hugging Face repository, pull hf.co/{asked.split(':')[0]}"
        hint += _catalog_hint(name)
        raise ModelNotFound(asked, hint)
    try:
        check_response(response, f"manifest of {registry.repo}:{name.tag}")
    except _Retry as exc:
        raise PullError(f"{name.host} is having trouble ({exc}); try again later") from None
    raw = response.content
    try:
        manifest = json.loads(raw)
        layers = manifest["layers"]
        assert isinstance(layers, list)
    except (ValueError, KeyError, AssertionError, TypeError):
        raise PullError(f"{name.host} sent something that is not a model manifest for {registry.repo}:{name.tag}") from None
    media = manifest.get("mediaType") or response.headers.get("content-type", "").split(";")[0]
    if media and media not in MANIFEST_TYPES and not media.startswith("application/json"):
        raise PullError(f"{registry.repo}:{name.tag} has a manifest of type {media!r}, which imgscribe does not read")
    return manifest, raw


def _catalog_hint(name: ModelName) -> str:
    """``imgscribe pull smolvlm-256m``: the catalog knows where that model is published."""
    from ..catalog import lookup

    try:
        match = lookup(name.model if name.tag == "latest" else f"{name.model}:{name.tag}")
    except Exception:  # noqa: BLE001 - a hint only
        return ""
    return f" (imgscribe's catalog knows '{match.query}': imgscribe pull {match.variant.pull_name})" if match else ""


def _layers(manifest: dict[str, Any], repo: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    layers = []
    for layer in manifest["layers"]:
        media = str(layer.get("mediaType", ""))
        if media == PREFIX + "tensor" or media.startswith(PREFIX + "tensor"):
            raise PullError(
                f"{repo} is stored as separate tensors for Ollama's MLX engine, not as a GGUF: "
                "imgscribe cannot run it; pull a GGUF build (hf.co/ORG/REPO) instead"
            )
        layers.append(layer)
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else None
    if config and not config.get("digest"):
        config = None
    return layers, config


def pull(
    store, name: ModelName, asked: str, insecure: bool, cancel: threading.Event | None = None
) -> Iterator[dict[str, Any]]:
    base = f"{'http' if insecure else 'https'}://{name.host}"
    with new_client() as client:
        registry = Registry(client, base, name)
        manifest, raw = _registry_manifest(registry, asked)
        layers, config_layer = _layers(manifest, registry.repo)
        roles = {MEDIA_TYPES.get(str(layer.get("mediaType")), "") for layer in layers}
        if "model" not in roles:
            raise PullError(f"{registry.repo}:{name.tag} has no model layer; it is not a model imgscribe can run")
        config = _config(store, registry, config_layer)
        verdict = _inspect(store, registry, layers)

        yield {"status": "pulling manifest"}
        yield from verdict.events()
        all_layers = layers + ([config_layer] if config_layer else [])
        by_digest = {str(layer["digest"]): MEDIA_TYPES.get(str(layer.get("mediaType")), "") for layer in all_layers}
        translated = {role: str(layer["digest"]) for layer in layers
                      if (role := by_digest[str(layer["digest"])]) in verdict.translations}  # fmt: skip
        done = {digest: translate.recorded(store, digest) for digest in translated.values()}
        auth = {"Authorization": f"Bearer {registry.token}"} if registry.token else {}
        items = [
            Item(url=registry.url("blobs", str(layer["digest"])), digest=str(layer["digest"]),
                 size=int(layer.get("size", 0)), headers=auth)
            for layer in all_layers if not done.get(str(layer["digest"]))
        ]  # fmt: skip
        digests = [str(layer["digest"]) for layer in all_layers]
        try:
            with gc.pinned(store.root, digests):
                yield from Downloader(store.blobs, client).run(items, cancel)
                yield {"status": "verifying sha256 digest"}
                made: dict[str, dict[str, str]] = {}  # published digest -> {role: translated blob}
                for role, digest in translated.items():
                    made[digest] = yield from translate.ensure(store, digest, verdict.translations[role])
                outputs = {role: blob for roles in made.values() for role, blob in roles.items()}
                if outputs:
                    yield {"status": _disk_use(store, all_layers, translated, outputs)}
                with gc.pinned(store.root, list(outputs.values())):
                    model = _manifest(store, name, layers, config, raw, outputs)
                    verdict.record(model.info.model_info)
                    _describe_translation(model, verdict)
                    yield {"status": "writing manifest"}
                    stored_layers = [
                        Layer(media_type=str(layer.get("mediaType", "")), digest=str(layer["digest"]),
                              size=int(layer.get("size", 0)), role=by_digest[str(layer["digest"])])
                        for layer in all_layers if str(layer["digest"]) not in translated.values()
                    ]  # fmt: skip
                    stored_layers += [Layer(media_type=PREFIX + role, digest=digest, size=store.blobs.size(digest),
                                            role=role) for role, digest in outputs.items()]  # fmt: skip
                    source = {"kind": "ollama", "registry": base, "repository": registry.repo, "tag": name.tag,
                              "digest": model.info.digest,
                              "layers": [{"digest": str(layer["digest"]), "mediaType": str(layer.get("mediaType", "")),
                                          "size": int(layer.get("size", 0))} for layer in all_layers]}  # fmt: skip
                    if translated:
                        source["translated"] = {digest: {"outputs": made[digest], "changes": verdict.translations[role].changes}
                                                for role, digest in translated.items()}  # fmt: skip
                    yield from finish(store, name, model, stored_layers, source)
        except InvalidRequest:  # the files arrived but are not a model we can run: do not keep them
            forget(store, digests)
            raise
        if translated:  # the published blobs are kept only until their translation is in a manifest
            forget(store, list(translated.values()))


def _disk_use(store, layers: list[dict[str, Any]], translated: dict[str, str], outputs: dict[str, str]) -> str:
    published = sum(int(layer.get("size", 0)) for layer in layers if str(layer["digest"]) in translated.values())
    written = sum(store.blobs.size(digest) for digest in outputs.values())
    return (f"translated files: {human_bytes(written)} on disk; the published blob ({human_bytes(published)}) "
            "is removed once the manifest is written")


def _describe_translation(model: ModelManifest, verdict: Verdict) -> None:
    """What ``show`` says about a translated model."""
    if not verdict.translations:
        return
    lines = ["Translated for llama.cpp when it was pulled (Ollama's published layout differs from what "
             "llama-server loads):"] + [f"- {change}" for change in verdict.changes]  # fmt: skip
    model.info.description = "\n".join(p for p in (model.info.description, "\n".join(lines)) if p)


def _config(store, registry: Registry, layer: dict[str, Any] | None) -> dict[str, Any]:
    """The small config blob (family, quantisation), read before the big layers are fetched."""
    if not layer:
        return {}
    digest = str(layer["digest"])
    try:
        if store.blobs.has(digest):
            data = store.blobs.path(digest).read_bytes()
        else:
            response = registry.get(registry.url("blobs", digest))
            check_response(response, f"config of {registry.repo}")
            data = response.content
        config = json.loads(data)
        return config if isinstance(config, dict) else {}
    except (ValueError, OSError, _Retry, InvalidRequest):
        return {}  # informative only; the blob itself is fetched and verified with the others


def _inspect(store, registry: Registry, layers: list[dict[str, Any]]) -> Verdict:
    """Read the model layer's (and the projector's) GGUF header with Range requests and decide, from
    the blobs, before the big download (``inspect.py``); raises ``Unsupported`` with the alternative."""
    name = registry.name
    shown = f"{name.short if name.host == DEFAULT_HOST else registry.repo + ':' + name.tag}"
    auth = {"Authorization": f"Bearer {registry.token}"} if registry.token else {}

    def header(layer: dict[str, Any], what: str):
        digest = str(layer["digest"])
        try:
            if store.blobs.has(digest):
                from ...formats.gguf import read_gguf

                return read_gguf(store.blobs.path(digest))
            return remote_header(registry.client, registry.url("blobs", digest), auth, f"{shown}'s {what}")
        except InvalidRequest as exc:
            raise InvalidRequest(f"the {what} of {shown} is not one llama.cpp can run: {exc}") from None

    by_role: dict[str, dict[str, Any]] = {}
    for layer in layers:
        by_role.setdefault(MEDIA_TYPES.get(str(layer.get("mediaType")), ""), layer)
    model = header(by_role["model"], "model layer")
    projector = by_role.get("projector")
    verdict = check_model(model, shown, name.tag, has_projector=projector is not None)
    if projector is not None:
        alternative = llava_alternative(name.model, name.tag) if name.namespace == "library" else ""
        translation = check_projector(header(projector, "projector layer"), model, shown, alternative)
        if translation is not None:
            verdict.action = "translate"
            verdict.translations["projector"] = translation
    return verdict


def _manifest(store, name: ModelName, layers: list[dict[str, Any]], config: dict[str, Any], raw: bytes,
              translated: dict[str, str]) -> ModelManifest:  # fmt: skip
    """The model of the downloaded layers; ``translated``: role -> the blob that replaces that layer."""
    paths: dict[str, str] = {role: str(store.blobs.path(digest)) for role, digest in translated.items()}
    texts: dict[str, str] = {}
    for layer in layers:
        role = MEDIA_TYPES.get(str(layer.get("mediaType")), "")
        path = store.blobs.path(str(layer["digest"]))
        if role in ("model", "projector", "adapter") and role not in paths:
            paths[role] = str(path)
        elif role in _TEXT_ROLES and int(layer.get("size", 0)) <= _SMALL:
            texts[role] = texts.get(role, "") + path.read_text(encoding="utf-8", errors="replace")
    model = manifest_for_gguf_blobs(name.short, paths["model"], paths.get("projector"))
    if "adapter" in paths:
        model.files["adapter"] = paths["adapter"]
    info = model.info
    if config:
        info.family = str(config.get("model_family") or info.family)
        families = config.get("model_families")
        if isinstance(families, list) and families:
            info.families = [str(f) for f in families]
        info.parameter_size = str(config.get("model_type") or info.parameter_size)
        info.quantization_level = str(config.get("file_type") or info.quantization_level)
        info.format = str(config.get("model_format") or info.format or "gguf")
    if texts.get("params"):
        try:
            params = json.loads(texts["params"])
            if isinstance(params, dict):
                model.parameters.update(model_options(params, name.short))
                ignored = sorted(str(k) for k in params if k not in MODEL_PARAMETERS)
                if ignored:
                    log.warning("model '%s': ignored parameters of its params layer: %s", name.short, ", ".join(ignored))
        except ValueError:
            pass
    if texts.get("template"):
        model.template = texts["template"]
    if texts.get("system"):
        model.system = texts["system"]
    if texts.get("license"):
        info.license = texts["license"]
    info.digest = hashlib.sha256(raw).hexdigest()  # what Ollama shows as the model's id
    info_from_catalog(info, name.short)
    return model

