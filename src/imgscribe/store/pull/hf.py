"""Pulling ``hf.co/ORG/REPO[:QUANT]`` from the Hugging Face Hub (``IMGSCRIBE_HF_ENDPOINT``).

The Hub's plain HTTP API, no client library:

- ``GET /api/models/ORG/REPO`` (the repository and its current commit, ``sha``; 401/404: no such
  repository, or a private one; 403: gated),
- ``GET /api/models/ORG/REPO/tree/<sha>?recursive=true`` (every file with its size; large files
  carry ``lfs.oid``, their SHA-256; small ones their git blob id; pages follow ``Link: rel="next"``),
- ``GET /ORG/REPO/resolve/<sha>/<path>`` (the bytes, usually via a redirect to a CDN; ``Range``
  works). ``IMGSCRIBE_HF_TOKEN`` (or ``HF_TOKEN``) is sent as a bearer token when set.

Two kinds of repository:

- **GGUF** (it has ``*.gguf`` files): the model file whose name carries the quantisation asked for
  (the tag; by default Q4_K_M, else the closest common one), as Ollama's ``hf.co/`` names do, and the
  first ``mmproj*.gguf`` (F16 preferred) whose header llama-server can use with that model (read
  with Range requests before the download, ``inspect.py``; none usable: refused) -> engine ``llamacpp``, files
  ``{"model": blob, "projector": blob}``. A model split in parts (``-00001-of-0000N.gguf``) becomes a
  snapshot folder and ``model`` names its first part, as llama.cpp expects.
- **checkpoint** (``config.json`` and weights): safetensors (else ``.bin``) weights, configs,
  tokenizer and processor files, custom code -> engine ``transformers``, ``files = {"model":
  snapshot folder}``. The family is checked against the transformers engine's list before the
  weights are downloaded.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from ...config import settings
from ...errors import InvalidRequest, ModelNotFound
from ...formats import checkpoints as families
from ...formats.gguf import read_gguf
from ...types import ModelInfo, ModelManifest
from .. import gc, translate
from ..blobs import safe_relative
from ..manifests import Layer
from ..names import DEFAULT_TAG, ModelName
from .common import finish, forget, info_from_catalog, manifest_for_gguf_blobs
from .download import Downloader
from .errors import PullError, Unsupported
from .http import _Retry, check_response, new_client, transport_error
from .inspect import Verdict, check_model, projector_problem, remote_header
from .progress import Item

__all__ = ["DEFAULT_QUANT", "HF_HOSTS", "pick_gguf", "pull"]

HF_HOSTS = ("hf.co", "huggingface.co", "www.huggingface.co")
DEFAULT_QUANT = "Q4_K_M"
#: When the name asks for no quantisation and the repository has no Q4_K_M: the first of these found.
QUANT_PREFERENCE = ("Q4_K_M", "Q4_K", "Q4_K_S", "Q4_0", "Q5_K_M", "Q5_K", "Q5_K_S", "Q6_K", "Q8_0",
                    "Q3_K_M", "Q4_1", "Q5_0", "IQ4_XS", "IQ4_NL", "BF16", "F16", "F32")  # fmt: skip
PROJECTOR_PREFERENCE = ("F16", "BF16", "Q8_0", "F32")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_SKIP_DIRS = {"onnx", "original", "openvino", "coreml", "mlx", "gguf", "tflite", "flax", "tf", "assets", "images"}
_SIDE_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".py", ".jinja", ".vocab", ".spm")


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    git_oid: str | None  # small files

    @property
    def base(self) -> str:
        return PurePosixPath(self.path).name


def repo_parts(asked: str) -> tuple[str, str]:
    """ORG and REPO as the user spelled them (the stored name is lower case; the Hub's is not)."""
    text = asked.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    pieces = text.split("/")
    if len(pieces) != 3:
        raise InvalidRequest(f"invalid Hugging Face name {asked!r}: use hf.co/ORG/REPO[:QUANT]")
    org, repo = pieces[1], pieces[2].split(":", 1)[0]
    return org, repo


class Hub:
    def __init__(self, client: httpx.Client, endpoint: str, repo_id: str, asked: str):
        self.client = client
        self.endpoint = endpoint.rstrip("/")
        self.repo_id = repo_id
        self.asked = asked

    def _get(self, url: str, **kw: Any) -> httpx.Response:
        for attempt in range(3):
            try:
                response = self.client.get(url, **kw)
            except httpx.TransportError as exc:
                if attempt == 2 or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    raise transport_error(exc, url) from None
                continue
            if response.status_code in (401, 404):
                raise ModelNotFound(
                    self.asked,
                    f"Hugging Face has no repository {self.repo_id} (or it is private: set HF_TOKEN to a token that can read it)",
                )
            if response.status_code == 403:
                raise PullError(
                    f"access to {self.repo_id} is restricted (a gated model): accept its conditions on "
                    f"https://huggingface.co/{self.repo_id} and set HF_TOKEN to a token of that account"
                )
            try:
                check_response(response, f"repository {self.repo_id}")
            except _Retry:
                if attempt == 2:
                    raise PullError(f"Hugging Face is having trouble ({response.status_code}); try again later") from None
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def revision(self) -> str:
        data = self._get(f"{self.endpoint}/api/models/{self.repo_id}").json()
        sha = data.get("sha") if isinstance(data, dict) else None
        return str(sha) if sha else "main"

    def files(self, revision: str) -> list[RepoFile]:
        url: str | None = f"{self.endpoint}/api/models/{self.repo_id}/tree/{revision}"
        params: dict[str, str] | None = {"recursive": "true"}
        out: list[RepoFile] = []
        while url:
            response = self._get(url, params=params)
            for entry in response.json():
                if entry.get("type") != "file":
                    continue
                lfs = entry.get("lfs") or {}
                path = str(entry["path"])
                safe_relative(path)  # a listing that names ../ is refused outright
                out.append(RepoFile(path, int(lfs.get("size") or entry.get("size") or 0),
                                    lfs.get("oid") or None, None if lfs else entry.get("oid")))  # fmt: skip
            url = response.links.get("next", {}).get("url")
            params = None
        return out

    def url(self, revision: str, path: str) -> str:
        return f"{self.endpoint}/{self.repo_id}/resolve/{revision}/{quote(path)}"


# -- choosing files -----------------------------------------------------------------------------


def _has_quant(base: str, quant: str) -> bool:
    return re.search(rf"(^|[-_.]){re.escape(quant.upper())}(?=[-.]|$)", base.upper()) is not None


def _quants(models: list[RepoFile]) -> list[str]:
    found = []
    for f in models:
        stem = _SPLIT.sub(".gguf", f.base)[: -len(".gguf")]
        match = re.search(r"((?:I?Q\d[A-Z0-9_]*)|BF16|F16|F32)$", stem.upper())
        found.append(match.group(1) if match else f.base)
    return sorted(set(found))


def pick_gguf(files: list[RepoFile], tag: str) -> tuple[list[RepoFile], RepoFile | None, str]:
    """(model file or its split parts in order, projector or None, quantisation) for a tag."""
    ggufs = [f for f in files if f.base.lower().endswith(".gguf")]
    projectors = [f for f in ggufs if "mmproj" in f.base.lower()]
    models = [f for f in ggufs if f not in projectors]
    if not models:
        raise PullError("the repository has only projector GGUF files, no model")
    if tag.lower() != DEFAULT_TAG:
        quant = tag.upper()
        chosen = [f for f in models if _has_quant(f.base, quant)]
        if not chosen:
            raise _NoQuant(quant, _quants(models))
    else:
        chosen, quant = [], ""
        for candidate in QUANT_PREFERENCE:
            chosen = [f for f in models if _has_quant(f.base, candidate)]
            if chosen:
                quant = candidate
                break
        if not chosen:
            if len({_SPLIT.sub(".gguf", f.path) for f in models}) != 1:
                raise _NoQuant("", _quants(models))
            chosen, quant = models, ""
    first = min(chosen, key=lambda f: f.path)
    split = _SPLIT.search(first.base)
    if split:
        prefix = first.path[: split.start()]
        chosen = sorted((f for f in models if f.path.startswith(prefix) and _SPLIT.search(f.base)), key=lambda f: f.path)
    else:
        chosen = [first]
    candidates = projector_candidates(files)
    return chosen, (candidates[0] if candidates else None), quant


def projector_candidates(files: list[RepoFile]) -> list[RepoFile]:
    """The repository's projector files, in the order of :data:`PROJECTOR_PREFERENCE` (F16 first);
    the pull reads their headers and takes the first one llama-server can use with the model."""
    projectors = sorted((f for f in files if f.base.lower().endswith(".gguf") and "mmproj" in f.base.lower()),
                        key=lambda f: f.path)  # fmt: skip
    ordered: list[RepoFile] = []
    for pref in PROJECTOR_PREFERENCE:
        ordered += [p for p in projectors if _has_quant(p.base, pref) and p not in ordered]
    return ordered + [p for p in projectors if p not in ordered]


class _NoQuant(Exception):
    def __init__(self, quant: str, available: list[str]):
        self.quant, self.available = quant, available


def pick_checkpoint(files: list[RepoFile]) -> list[RepoFile]:
    """What the transformers engine needs from a checkpoint repository."""
    top = {f.path for f in files}
    if "config.json" not in top:
        raise PullError("the repository has neither GGUF files nor a config.json: it is not a model imgscribe can run")

    def wanted_dir(f: RepoFile) -> bool:
        parts = PurePosixPath(f.path).parts
        return not any(p.lower() in _SKIP_DIRS or p.startswith(".") for p in parts[:-1])

    candidates = [f for f in files if wanted_dir(f)]
    safetensors = [f for f in candidates if f.base.endswith(".safetensors")]
    if safetensors:
        weights = safetensors
    else:
        weights = [f for f in candidates if f.base.endswith((".bin", ".pt", ".pth")) and "training_args" not in f.base]
    if not weights:
        raise PullError("the repository has a config.json but no weights (.safetensors or .bin)")
    side = [
        f for f in candidates
        if f not in weights and not f.base.startswith(".")
        and (f.base.endswith(_SIDE_SUFFIXES) or f.base.upper().startswith(("LICENSE", "NOTICE", "USE_POLICY")))
        and not f.base.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf"))
    ]  # fmt: skip
    return side + weights


# -- the pull -----------------------------------------------------------------------------------


def pull(store, name: ModelName, asked: str, cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    org, repo = repo_parts(asked)
    repo_id = f"{org}/{repo}"
    token = settings().hf_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with new_client(headers) as client:
        hub = Hub(client, settings().hf_endpoint, repo_id, asked)
        revision = hub.revision()
        files = hub.files(revision)
        if any(f.base.lower().endswith(".gguf") for f in files):
            try:
                chosen, projector, quant = pick_gguf(files, name.tag)
            except _NoQuant as exc:
                have = ", ".join(exc.available) or "none"
                if exc.quant:
                    raise ModelNotFound(asked, f"{repo_id} has no GGUF file for quantisation '{exc.quant}' (it has: {have})") from None
                raise InvalidRequest(f"{repo_id} has several GGUF files; name one with a tag: hf.co/{repo_id}:QUANT ({have})") from None
            projector, verdict = _inspect(store, hub, revision, name, chosen[0], projector_candidates(files))
            if "model" in verdict.translations and len(chosen) > 1:
                raise Unsupported(f"hf.co/{repo_id}'s GGUF needs translating for llama.cpp "
                                  f"({verdict.translations['model'].summary}), which imgscribe does for single files "
                                  "only, and this one is split in parts; pull a build in one file", verdict="translate")  # fmt: skip
            wanted = chosen + ([projector] if projector else [])
            kind = "gguf"
        else:
            if name.tag.lower() != DEFAULT_TAG:
                raise InvalidRequest(
                    f"{repo_id} is a transformers checkpoint (no GGUF files), so it has no quantisation tags: "
                    f"pull hf.co/{repo_id}"
                )
            wanted = pick_checkpoint(files)
            _check_family(hub, revision, files)
            chosen, projector, quant, kind = [], None, "", "checkpoint"
            verdict = None

        yield {"status": "pulling manifest"}
        if verdict is not None:
            yield from verdict.events()
        items = [Item(url=hub.url(revision, f.path), digest=f"sha256:{f.sha256}" if f.sha256 else None,
                      size=f.size, name=f.path, git_oid=f.git_oid) for f in wanted]  # fmt: skip
        known = [str(i.digest) for i in items if i.digest]
        fetched: list[str] = []
        snapshots: list[str] = []
        try:
            with gc.pinned(store.root, known):
                yield from Downloader(store.blobs, client).run(items, cancel)
                by_path = {f.path: str(i.result) for f, i in zip(wanted, items, strict=True)}
                snapshots = [store.blobs.snapshot_key(by_path), store.blobs.snapshot_key({f.base: by_path[f.path] for f in chosen})]
                fetched = [str(i.result) for i in items] + snapshots
                gc.pin(store.root, fetched)  # what became known just now: files without a listed digest, folders
                try:
                    yield {"status": "verifying sha256 digest"}
                    layers = [Layer(digest=by_path[f.path], size=f.size, path=f.path) for f in wanted]
                    if kind == "gguf":
                        translated = yield from _translate(store, verdict, chosen, projector, by_path)
                        gc.pin(store.root, list(translated.values()))
                        fetched += list(translated.values())
                        layers += [Layer(digest=d, size=store.blobs.size(d), role=role) for role, d in translated.items()]
                        model = _gguf_manifest(store, name, chosen, projector, by_path, quant, translated)
                        if verdict is not None:
                            verdict.record(model.info.model_info)
                    else:
                        model = _checkpoint_manifest(store, name, repo_id, by_path)
                    info_from_catalog(model.info, asked)
                    yield {"status": "writing manifest"}
                    source = {"kind": "huggingface", "endpoint": hub.endpoint, "repository": repo_id,
                              "revision": revision, "files": [f.path for f in wanted]}  # fmt: skip
                    yield from finish(store, name, model, layers, source)
                finally:
                    gc.unpin(store.root, fetched)
        except InvalidRequest:  # the files arrived but are not a model we can run: do not keep them
            forget(store, [*known, *(f for f in fetched if f.startswith("sha256:"))], snapshots)
            raise


def _inspect(
    store, hub: Hub, revision: str, name: ModelName, model: RepoFile, candidates: list[RepoFile]
) -> tuple[RepoFile | None, Verdict]:
    """Before the download: the model GGUF's verdict from its header, and the first projector
    candidate whose header llama-server can use with it (``inspect.py``); raises ``Unsupported``."""
    shown = f"hf.co/{hub.repo_id}"

    def header(f: RepoFile):
        digest = f"sha256:{f.sha256}" if f.sha256 else ""
        try:
            if digest and store.blobs.has(digest):
                return read_gguf(store.blobs.path(digest))
            return remote_header(hub.client, hub.url(revision, f.path), {}, f"{shown}'s {f.path}")
        except InvalidRequest as exc:
            raise InvalidRequest(f"{f.path} of {shown} is not one llama.cpp can run: {exc}") from None

    model_header = header(model)
    verdict = check_model(model_header, shown, name.tag, has_projector=bool(candidates))
    problems, translatable = [], []
    for candidate in candidates:  # the first one usable as it is; else the first a translation makes usable
        found = header(candidate)
        _, why = projector_problem(found, model_header)
        if not why:
            return candidate, verdict
        plan = translate.plan(found, "projector")
        if plan is not None and not projector_problem(plan.previews(found)["projector"], model_header)[0]:
            translatable.append((candidate, plan))
        problems.append(f"{candidate.path}: {why}")
    if translatable:
        verdict.action, verdict.translations["projector"] = "translate", translatable[0][1]
        return translatable[0][0], verdict
    if not candidates:
        return None, verdict
    raise Unsupported(
        f"{shown} has no projector llama-server can use with {model.path} ({'; '.join(problems)}); pull a "
        "GGUF build whose mmproj matches the model (the ggml-org/...-GGUF builds do), or its Hugging Face checkpoint",
        verdict="translate" if any("clip.projector_type" in p for p in problems) else "refuse",
    )


def _check_family(hub: Hub, revision: str, files: list[RepoFile]) -> None:
    """Refuse, before the weights download, a checkpoint the transformers engine cannot run."""
    try:
        response = hub._get(hub.url(revision, "config.json"))
        config = response.json()
    except (ValueError, PullError, ModelNotFound):
        return  # the full download will tell
    if isinstance(config, dict):
        families.detect(config, f"hf.co/{hub.repo_id}")


def _translate(store, verdict: Verdict | None, chosen: list[RepoFile], projector: RepoFile | None,
               by_path: dict[str, str]) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Translate the downloaded GGUFs the inspection said need it (``store/translate``); returns role ->
    translated blob. The repository's own files stay in the store: its snapshot lists them."""
    outputs: dict[str, str] = {}
    for role, translation in (verdict.translations if verdict else {}).items():
        source = chosen[0] if role == "model" else projector
        assert source is not None
        outputs.update((yield from translate.ensure(store, by_path[source.path], translation)))
    return outputs


def _gguf_manifest(
    store, name: ModelName, chosen: list[RepoFile], projector: RepoFile | None, by_path: dict[str, str], quant: str,
    translated: dict[str, str],
) -> ModelManifest:
    if "model" in translated:
        model_path = store.blobs.path(translated["model"])
    elif len(chosen) == 1:
        model_path = store.blobs.path(by_path[chosen[0].path])
    else:  # split GGUF: llama.cpp finds the other parts beside the first, by name
        folder = store.blobs.snapshot({f.base: by_path[f.path] for f in chosen})
        model_path = folder / chosen[0].base
    projector_path = store.blobs.path(by_path[projector.path]) if projector else None
    if "projector" in translated:
        projector_path = store.blobs.path(translated["projector"])
    model = manifest_for_gguf_blobs(name.short, str(model_path), str(projector_path) if projector_path else None)
    if quant and not model.info.quantization_level:
        model.info.quantization_level = quant
    return model


def _checkpoint_manifest(store, name: ModelName, repo_id: str, by_path: dict[str, str]) -> ModelManifest:
    folder = store.blobs.snapshot(by_path)
    try:  # described as `imgscribe create --from FOLDER` describes one, for the transformers engine
        from ..importer import describe_hf_folder
    except ImportError:
        describe_hf_folder = None
    if describe_hf_folder is not None:
        model = describe_hf_folder(folder)
        model.name = model.info.name = name.short
        info = model.info
        info.digest = ""  # the store's: from the blobs
        info.summary = f"{repo_id}: {info.summary}"
        info.description = info.description.replace(
            "The folder is used in place: moving or deleting it breaks this model.", ""
        ).replace(str(folder), f"hf.co/{repo_id} (pulled)").strip()
        return model
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"{repo_id}: its config.json cannot be read: {exc}") from None
    return ModelManifest(name=name.short, engine="transformers", files={"model": str(folder)},
                         info=_checkpoint_info(name.short, repo_id, folder, config))  # fmt: skip


def _checkpoint_info(name: str, repo_id: str, folder: Path, config: dict[str, Any]) -> ModelInfo:
    vision = bool(config.get("vision_config")) or (folder / "preprocessor_config.json").is_file()
    info = ModelInfo(
        name=name,
        engine="transformers",
        family=str(config.get("model_type") or ""),
        families=[str(config.get("model_type") or "")],
        format="safetensors" if any(folder.glob("*.safetensors")) else "pytorch",
        capabilities=["completion", "vision"] if vision else ["completion"],
        is_vlm=vision,
        summary=f"{repo_id} (a transformers checkpoint)",
        description="Run by the transformers engine from the checkpoint's own files (bf16/fp16 as published).",
    )
    family = families.detect(config, f"hf.co/{repo_id}")
    info.family = family.ollama
    info.families = families.families_of(family, config)
    info.context_length = families.context_length(config)
    count, dtype = families.weights_facts(folder)
    info.parameter_size = families.format_parameters(count)
    info.quantization_level = dtype
    info.summary = f"{repo_id} ({family.title}, a transformers checkpoint)"
    if not info.quantization_level:
        dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
        info.quantization_level = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(dtype, dtype.upper())
    return info
