"""What the Ollama and OpenAI dialects share: a model's system prompt and default options over a
request, Ollama's ``format`` as a JSON schema, and a peer's error answer as an imgscribe error."""

from __future__ import annotations

from typing import Any, get_args

from ..errors import EngineFailed, ImgscribeError, InvalidRequest, ModelNotFound, RemoteFailed
from ..types import ChatRequest, DoneReason, Message, Options

__all__ = ["done_reason", "event_error", "format_schema", "merged_options", "peer_error", "with_system"]

DONE_REASONS: tuple[str, ...] = get_args(DoneReason)


def with_system(request: ChatRequest, system: str) -> list[Message]:
    """The request's messages, a model's ``system`` prompt first unless the request has its own."""
    messages = list(request.messages)
    if system and not any(m.role == "system" for m in messages):
        messages.insert(0, Message(role="system", content=system))
    return messages


def merged_options(request: ChatRequest, defaults: dict[str, Any]) -> Options:
    """The request's options over a model's defaults (a manifest's ``parameters``)."""
    known = {k: v for k, v in defaults.items() if k in Options.model_fields and v is not None}
    given = request.options.model_dump(exclude_none=True)
    return Options.model_validate({**known, **given})


def format_schema(format: Any) -> dict[str, Any] | None:
    """Ollama's ``format`` as a JSON schema ("json": any object); None for no format."""
    if format is None or format == "":
        return None
    if format == "json":
        return {"type": "object"}
    if isinstance(format, dict):
        return format
    raise InvalidRequest(f"unsupported format {format!r}: use \"json\" or a JSON schema object")


def done_reason(reason: Any) -> DoneReason:
    """A peer's done reason as one of ours (an unknown one is "stop")."""
    return reason if reason in DONE_REASONS else "stop"


def peer_error(status: int, message: str, peer: str, model: str | None = None, *,
               gateway: bool = False) -> ImgscribeError:  # fmt: skip
    """Another server's error answer (``peer``: who, e.g. "the remote server URL") blamed on it: a
    model it does not have (404 saying "not found"), a request it refused (4xx: the user's to
    change), or its failure: a 502 when it is another machine's server (``gateway``), else (our own
    llama-server child) the engine's 500."""
    if model is not None and status == 404 and "not found" in message.lower():
        return ModelNotFound(model, f"on {peer} ({message})")
    if 400 <= status < 500:
        return InvalidRequest(f"{peer} refused the request ({status}): {message}")
    return (RemoteFailed if gateway else EngineFailed)(f"{peer} failed ({status}): {message}")


def event_error(event: dict[str, Any]) -> str | None:
    """The message of an error event in a stream (``{"error": "..."}`` or ``{"error": {"message"}}``)."""
    err = event.get("error")
    if not err:
        return None
    return str(err.get("message", err)) if isinstance(err, dict) else str(err)
