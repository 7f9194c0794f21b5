"""Model names like Ollama's: ``[host/][namespace/]model[:tag]``, tag ``latest`` by default."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}(:\d{1,5})?$")


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def short(self) -> str:
        """How ``list`` shows it: host and namespace dropped when they are the defaults."""
        prefix = ""
        if self.host != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """Path components under the store; each was validated, so none can escape it."""
        return (self.host.replace(":", "_"), self.namespace, self.model, self.tag)

    def __str__(self) -> str:
        return self.short


def parse_name(name: str) -> ModelName:
    """Parse and validate; a name that could escape the store directory is refused."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model name is required")
    text = name.strip()
    if text.startswith(("http://", "https://")):
        text = text.split("://", 1)[1]
    base, tag = text, DEFAULT_TAG
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        base, tag = text.rsplit(":", 1)
    pieces = base.split("/")
    if len(pieces) == 1:
        host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, pieces[0]
    elif len(pieces) == 2:
        host, namespace, model = DEFAULT_HOST, pieces[0], pieces[1]
    elif len(pieces) == 3:
        host, namespace, model = pieces
    else:
        raise InvalidRequest(f"invalid model name {name!r}: use [host/][namespace/]model[:tag]")
    if not _HOST.match(host) or not all(_PART.match(p) for p in (namespace, model, tag)):
        raise InvalidRequest(
            f"invalid model name {name!r}: letters, digits, '_', '-' and '.' only, "
            "and no part may start with '.' or be empty"
        )
    return ModelName(host.lower(), namespace.lower(), model.lower(), tag)
