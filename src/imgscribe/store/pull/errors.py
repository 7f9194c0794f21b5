"""What can go wrong in a pull, each with a message that says what to do."""

from __future__ import annotations

from ...errors import ImgscribeError, InvalidRequest


class PullError(ImgscribeError):
    """The registry or hub answered something unusable, or the transfer kept failing."""

    status = 502


class Offline(PullError):
    """Nothing answers at the registry's address: no network, no DNS, or the host is down."""

    def __init__(self, host: str, detail: str = ""):
        self.host = host
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot reach {host}: the network is unreachable or the server is down{why}. "
            "Without the network you can register model files you already have with "
            "'imgscribe create NAME --from PATH' (a GGUF with its mmproj, or a Hugging Face checkpoint folder), "
            "or use the 'builtin' model, which ships with imgscribe and needs no download"
        )


class DiskError(PullError):
    """The store could not write a download (disk full, permissions)."""

    status = 507


class DigestMismatch(PullError):
    """A blob's bytes do not hash to the digest the manifest promised, even after fetching it again."""


class Unsupported(InvalidRequest):
    """A model whose files the pinned llama-server cannot load as they are, found out from their headers
    before the big download; the message names what to pull instead. ``verdict`` says whether a
    translation of the files could make it run (``translate``) or nothing would (``refuse``)."""

    def __init__(self, message: str, verdict: str = "refuse"):
        self.verdict = verdict
        super().__init__(message)
