"""Ollama's REST API (``notes/anchors.md`` section 2), so Ollama's clients work unchanged.

Beyond Ollama: ``images`` may also hold data URIs, and http(s) URLs when the server fetches URLs;
images sent to a model without vision get a 400; an empty prompt *with* images is a question, not a
load; ``create`` takes ``from`` an existing model or ``files`` uploaded with ``POST /api/blobs``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from ..errors import InvalidRequest, Unsupported
from ..prompts import Template
from ..store import parse_name
from ..store.blobs import check_digest, safe_relative
from ..store.modelfile import apply
from ..types import ChatRequest, Message, Role, check_role
from ..version import OLLAMA_API_VERSION, __version__
from . import render
from .context import Server, server_of
from .errors import NotImplementedYet
from .inputs import clip_settings_for
from .paths import importable
from .remotes import check_key_variable, check_remote
from .render import Ollama, Progress
from .uploads import receive_blob
from .wire import ChatBody, CopyBody, CreateBody, GenerateBody, ModelBody, require_model

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running", headers={"X-Imgscribe-Version": __version__})


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    """The Ollama API version this server implements (clients gate on it); imgscribe's own in a
    field and a header."""
    return JSONResponse({"version": OLLAMA_API_VERSION, "imgscribe": __version__},
                        headers={"X-Imgscribe-Version": __version__})


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    body = await server.body(request, GenerateBody)
    settings = body.settings()
    if body.raw and (body.template or body.system or body.context):
        raise InvalidRequest("raw mode does not support template, system, or context")
    if body.template:
        Template.parse(body.template)  # a bad one is a 400 naming its line and column, before any work
    info = server.model(request, body.model, images=len(body.images or []), think=body.think)
    if body.suffix and "insert" not in info.capabilities:
        raise Unsupported(f'"{body.model}" does not support insert')
    dialect = Ollama(body.model, "generate")
    if not body.prompt and not body.images:
        return await _load(server, dialect, info.name, settings["keep_alive"])

    def work(cancel: threading.Event):
        [images], held = server.reader.read_request(
            [server.reader.labelled(body.images, "images")], cancel, server.image_sides(info, settings["options"]),
            media=True, clips=clip_settings_for(server.scheduler, info.name, settings["options"]),
        )
        messages = [Message("system", body.system)] if body.system else []
        messages.append(Message.with_media("user", body.prompt or "", images))
        request = ChatRequest(info.name, messages, raw=bool(body.raw), template=body.template or None, **settings)
        return server.answer(request, cancel, arrived, held)

    return await server.respond(request, work, dialect, stream=settings["stream"])


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    arrived = time.perf_counter_ns()
    server = server_of(request)
    body = await server.body(request, ChatBody)
    settings = body.settings()
    messages = body.messages or []
    roles = [_role(m.role, i) for i, m in enumerate(messages)]
    images = sum(len(m.images or []) for m in messages)
    info = server.model(request, body.model, images=images, think=body.think)
    if body.tools and "tools" not in info.capabilities:
        raise Unsupported(f'"{body.model}" does not support tools')
    dialect = Ollama(body.model, "chat")
    if not messages:
        return await _load(server, dialect, info.name, settings["keep_alive"])

    def work(cancel: threading.Event):
        groups = [server.reader.labelled(m.images, f"messages[{i}].images") for i, m in enumerate(messages)]
        images, held = server.reader.read_request(groups, cancel, server.image_sides(info, settings["options"]),
                                                  media=True, clips=clip_settings_for(server.scheduler, info.name,
                                                                                  settings["options"]))  # fmt: skip
        turns = [
            Message.with_media(role, m.content or "", imgs)
            for role, m, imgs in zip(roles, messages, images, strict=True)
        ]
        return server.answer(ChatRequest(info.name, turns, **settings), cancel, arrived, held)

    return await server.respond(request, work, dialect, stream=settings["stream"])




def _role(role: str, index: int) -> Role:
    """Ollama's roles are matched without case, as Go's decoder leaves them to the template."""
    return check_role(role.lower(), index)


async def _load(server: Server, dialect: Ollama, model: str, keep_alive: float | None) -> Response:
    """An empty prompt loads the model; with ``keep_alive: 0`` it unloads it."""
    if keep_alive == 0:
        await run_in_threadpool(server.scheduler.unload, model)
        return JSONResponse(dialect.load("unload"))
    await run_in_threadpool(server.scheduler.load, model, keep_alive)
    return JSONResponse(dialect.load("load"))


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> dict:
    def listed() -> list[dict]:
        from ..hardware import probe_ram

        available = probe_ram()[1] or 0  # RAM free now, for each model's memory fit
        return [render.tag(info, available) for info in server_of(request).store.list()]

    return {"models": await run_in_threadpool(listed)}


@router.post("/api/show")
async def show(request: Request) -> dict:
    server = server_of(request)
    body = await server.body(request, ModelBody)
    manifest = await run_in_threadpool(server.store.resolve, body.target)
    request.state.model = manifest.name
    return await run_in_threadpool(render.show, manifest)  # reads a projector's header


@router.get("/api/ps")
async def ps(request: Request) -> dict:
    return {"models": [render.running(row) for row in server_of(request).scheduler.ps()]}


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    """Ollama's progress stream; a client that goes away stops the download (it resumes later)."""
    server = server_of(request)
    body = await server.body(request, ModelBody)
    name, insecure = body.target, bool(body.insecure)
    work = lambda cancel: server.store.pull(name, insecure=insecure, cancel=cancel)  # noqa: E731
    return await server.respond(request, work, Progress(), stream=body.stream is not False)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    server = server_of(request)
    body = await server.body(request, ModelBody)
    name = body.target
    await run_in_threadpool(server.scheduler.unload, name)  # ModelNotFound when there is no such model
    await run_in_threadpool(server.store.delete, name)
    return Response(status_code=200)


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    server = server_of(request)
    body = await server.body(request, CopyBody)
    if not body.source or not body.destination:
        raise InvalidRequest("source and destination are required")
    await run_in_threadpool(server.store.copy, body.source, body.destination)
    return Response(status_code=200)


@router.post("/api/create")
async def create(request: Request) -> Response:
    """A new model: ``from`` an existing one, or from ``files`` uploaded with ``POST /api/blobs``
    (a GGUF and its projector, or a checkpoint's files), with its own ``system``, ``template``,
    ``parameters``, ``messages`` and ``license``, as Ollama >= 0.5 creates one."""
    server = server_of(request)
    body = await server.body(request, CreateBody)
    name = require_model(body.model)
    parse_name(name)  # a bad name is a 400 now, not an error at the end of a 200 stream
    settings = _settings(body)
    if body.quantize:
        raise NotImplementedYet(
            "quantizing is not available: /api/create registers a model's files as they are; make a "
            "quantized GGUF on the server's machine with 'imgscribe convert CHECKPOINT --quantize Q4_K_M' "
            "(or --outtype q8_0) and create the model from it"
        )
    if body.adapters:
        raise NotImplementedYet("LoRA adapters are not supported: merge the adapter into the model's weights first")
    if body.files:
        if body.from_ or body.remote or body.mmproj:
            raise InvalidRequest("give either 'files' (uploaded with POST /api/blobs) or 'from', not both")
        files = _uploaded(server.store, body.files)
        return await server.respond(request, _files_work(server, name, files, settings), Progress(),
                                    stream=body.stream is not False)  # fmt: skip
    if body.remote:
        from ..store.import_remote import normalise_url

        url = normalise_url(body.remote)  # a malformed URL is a 400 now, not an error at the end of a 200 stream
        check_key_variable(body.api_key_env, server.settings)
        await run_in_threadpool(check_remote, url, server.settings.remotes)  # resolves the host name
        return await server.respond(request, _remote_work(server, name, url, body), Progress(),
                                    stream=body.stream is not False)  # fmt: skip
    if not body.from_:
        raise InvalidRequest("'from' is required: the name of the model to start from (or 'files' uploaded "
                             "with POST /api/blobs)")  # fmt: skip

    if os.path.isabs(body.from_) or body.mmproj:
        source = importable(server.settings.import_roots, body.from_, "from")
        mmproj = importable(server.settings.import_roots, body.mmproj, "mmproj") if body.mmproj else None
        return await server.respond(request, _import_work(server, name, source, mmproj, settings), Progress(),
                                    stream=body.stream is not False)  # fmt: skip

    def work(cancel: threading.Event):
        parent = server.store.resolve(body.from_)
        yield {"status": "using existing model " + parent.name}
        manifest = apply(parent, **settings)
        if server.store.exists(name):
            server.scheduler.unload(name)  # the next request loads the new version
        server.store.create(name, manifest)
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    return await server.respond(request, work, Progress(), stream=body.stream is not False)


def _settings(body: CreateBody) -> dict:
    """What the new model sets over what it starts from, checked (keyword arguments of
    ``store.modelfile.apply``)."""
    messages = []
    for i, m in enumerate(body.messages or []):
        role = m.role.lower()
        if role not in ("system", "user", "assistant"):
            raise InvalidRequest(f"messages[{i}].role: invalid role {m.role!r}: use system, user or assistant")
        if m.images:
            raise InvalidRequest(f"messages[{i}].images: a model's messages hold text only")
        messages.append({"role": role, "content": m.content or ""})
    if body.template:
        Template.parse(body.template)  # a bad one is a 400 naming its line and column, before the stream
    return {"system": body.system, "template": body.template, "parameters": _check_parameters(body.parameters),
            "messages": messages, "license": body.license}  # fmt: skip


def _uploaded(store, files: dict[str, str]) -> dict[str, str]:
    """``files`` (name -> digest) checked: safe names, well-formed digests of blobs in the store."""
    out = {}
    for filename, digest in files.items():
        try:
            safe_relative(filename)
        except InvalidRequest:
            raise InvalidRequest(f"files: invalid file name {filename!r}: a relative path inside the model") from None
        checked = check_digest(digest)
        if not store.blobs.has(checked):
            raise InvalidRequest(f"files: {filename}: blob {checked} is not on this server: upload it first "
                                 f"(POST /api/blobs/{checked})")  # fmt: skip
        out[filename] = checked
    return out


def _files_work(server, name: str, files: dict[str, str], settings: dict):
    """A model from uploaded blobs, used in place in the store (no copy): GGUF files (the model and
    its projector, told apart by their headers) for llama.cpp, or a checkpoint's files (a snapshot
    folder of links to the blobs) for transformers."""
    from ..store import gc
    from ..store.modelfile import manifest_for_files

    def work(cancel: threading.Event):
        blobs = server.store.blobs
        with gc.pinned(blobs.root, files.values()):  # a prune meanwhile must not take them
            # the files are judged before the first status, so that a bad one is a 400, streamed or not
            ggufs = {f: d for f, d in files.items() if _is_gguf(blobs.path(d))}
            if ggufs:  # a GGUF model (and projector); other files (a folder's *.json, as Ollama's CLI sends) unused
                try:
                    manifest, source = manifest_for_files(name, [blobs.path(d) for d in ggufs.values()])
                except InvalidRequest as exc:
                    where = {str(p): f for f, d in ggufs.items() for p in (blobs.path(d), blobs.path(d).resolve())}
                    raise _unpathed(exc, where) from None
            elif any(Path(f).name == "config.json" for f in files):
                folder = blobs.snapshot(files)
                try:
                    manifest, source = manifest_for_files(name, [folder])
                except InvalidRequest as exc:
                    gc.collect(blobs, server.store.manifest_files, [], [folder.name])  # unless a model uses it
                    raise _unpathed(exc, {str(folder) + "/": "", str(folder): "the uploaded checkpoint"}) from None
                source = {"kind": "upload", "digest": (source or {}).get("digest", "")}
            else:
                raise InvalidRequest(f"files: {', '.join(files)}: no GGUF file and no checkpoint folder "
                                     "(config.json and its weights) among them")  # fmt: skip
            manifest = apply(manifest, **settings)
            yield {"status": "parsed model files: " + ", ".join(files)}
            if server.store.exists(name):
                server.scheduler.unload(name)
            server.store.create(name, manifest, source=source)
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    return work


def _check_parameters(parameters: dict | None) -> dict:
    """The new model's default options, checked as a request's would be (a bad one would otherwise
    make every request to the model fail), as the manifest keeps them. Only options: any other key
    (``server_args``, ``headers``, ``url``...: an engine's settings, which a request never sets) is a
    400 naming it, as Ollama's ``unknown parameter``, before anything is created."""
    from .wire import model_parameters

    try:
        return model_parameters(parameters)
    except InvalidRequest as exc:
        raise InvalidRequest(f"parameters: {exc}") from None


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _unpathed(exc: InvalidRequest, names: dict[str, str]) -> InvalidRequest:
    """``exc`` with the store's paths replaced by the names the client gave (they are the server's
    business, docs/security.md)."""
    message = exc.message
    for path, name in sorted(names.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(path, name)
    return InvalidRequest(f"files: {message}")


def _import_work(server, name: str, source: Path, mmproj: Path | None, settings: dict):
    """``from`` a checkpoint folder or GGUF file under ``IMGSCRIBE_IMPORT_ROOTS`` (imgscribe's extension)."""
    from ..store.importer import create_from_path

    def work(cancel: threading.Event):
        yield {"status": f"importing {source}"}
        if server.store.exists(name):
            server.scheduler.unload(name)
        create_from_path(server.store, name, source, mmproj=mmproj)
        if any(v for v in settings.values()):
            stored = server.store.stored(name)
            server.store.create(name, apply(server.store.resolve(name), **settings), source=stored.source)
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    return work


def _remote_work(server, name: str, url: str, body: CreateBody):
    """A model that lives on another Ollama or OpenAI-compatible server the owner allowed
    (imgscribe's extension; see server/remotes.py)."""
    from ..store.import_remote import manifest_for_remote

    def work(cancel: threading.Event):
        yield {"status": f"asking {url} about {body.remote_model or name}"}
        manifest = manifest_for_remote(name, url, body.remote_model, body.api, api_key=body.api_key,
                                       api_key_env=body.api_key_env)  # fmt: skip
        if server.store.exists(name):
            server.scheduler.unload(name)
        server.store.create(name, manifest)
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    return work


@router.post("/api/embed")
@router.post("/api/embeddings")
async def embed(request: Request) -> Response:
    """No model here makes embeddings: Ollama's answer for a model without the capability."""
    server = server_of(request)
    body = await server.body(request, ModelBody)
    info = server.model(request, body.target)
    raise Unsupported(f'"{body.target}" does not support embeddings ({info.name} describes images)')


@router.post("/api/push")
async def push(request: Request) -> Response:
    raise NotImplementedYet("pushing models to a registry is not available")


@router.head("/api/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    """200 when the store holds the blob, 404 when not (400 for a malformed digest), as Ollama."""
    found = server_of(request).store.blobs.has(check_digest(digest))
    return Response(status_code=200 if found else 404)


@router.post("/api/blobs/{digest}")
async def blob_upload(request: Request, digest: str) -> Response:
    """A model file for ``/api/create``'s ``files``: 201 when stored, 200 when it was already
    there, 400 when the bytes are not the digest (nothing kept); see server/uploads.py."""
    server = server_of(request)
    cfg = server.settings
    created = await receive_blob(request, server.store.blobs, digest, cfg.max_blob_bytes, cfg.body_timeout)
    return Response(status_code=201 if created else 200)
