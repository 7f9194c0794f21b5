"""Files on the server's disk named over the API: only under the folders its owner allowed.

``/api/create`` may register a checkpoint folder or a GGUF by path (imgscribe's extension), but a
client must not make the server read, register or load whatever file the server can read, nor learn
from the answers which paths exist. So a path is accepted only when, with every symbolic link and
``..`` resolved, it lies under one of ``IMGSCRIBE_IMPORT_ROOTS`` (none by default); the refusal is
the same sentence whether the path exists or not. The CLI on the same machine registers any file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import Forbidden, InvalidRequest


def importable(roots: Sequence[Path], value: str, field: str) -> Path:
    """``value`` as a path under one of ``roots``; Forbidden (403) otherwise, saying which setting
    opens the door; InvalidRequest (400) when an allowed path does not exist."""
    if not roots:
        raise Forbidden(
            f"{field}: this server does not register files from its disk over the API; name an existing "
            "model, or let the server's owner allow folders with IMGSCRIBE_IMPORT_ROOTS "
            "(or run 'imgscribe create' on the server's machine)"
        )
    if not os.path.isabs(value) or "\0" in value:
        raise InvalidRequest(f"{field}: a path on the server must be absolute")
    path = Path(os.path.realpath(value))
    if not any(path.is_relative_to(root) for root in roots):
        raise Forbidden(f"{field}: {value} is not under the folders this server imports from (IMGSCRIBE_IMPORT_ROOTS)")
    if not path.exists():
        raise InvalidRequest(f"{field}: no such file or folder on the server: {value}")
    return path
