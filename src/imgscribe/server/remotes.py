"""Remote models registered over the API: only servers the owner allowed, never this machine's insides.

A remote model makes the server contact a URL and hand back what it answers (through ``/api/show``
and ``/api/chat``), so a client that could name any URL could reach services on loopback or the
LAN, cloud metadata, or use error messages as a port scanner. Over the API, therefore:

- the URL must match an entry of ``IMGSCRIBE_REMOTES`` (none by default, as ``OLLAMA_REMOTES``
  admits only its own cloud): ``host``, ``host:port``, ``*.domain``, or a base URL
  (``https://api.example.com/v1``), whose scheme, port and path then must match too. Without a path
  in the entry, the URL's path may only be empty or ``/v1``. Host names are compared as written:
  ``2130706433`` or ``[::ffff:127.0.0.1]`` match only an entry that says so;
- every address the host resolves to goes through the image-URL guard (:func:`.urls.refusal`):
  loopback, private, link-local and other non-public addresses are refused unless the entry itself
  names such an address (or ``localhost``) — the owner's explicit choice; cloud metadata addresses
  are refused always;
- a remote model's API key comes from the request itself (stored with the manifest, file mode
  0600) or from an environment variable the owner listed in ``IMGSCRIBE_REMOTE_KEYS``; a client
  can never name another server-side variable, and the refusal does not say whether it is set.

The local CLI writes to its own store directly and may register any remote.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import Forbidden, InvalidRequest
from .urls import refusal, resolve

_OPEN_PATHS = ("", "/v1")


@dataclass(frozen=True)
class Entry:
    """One ``IMGSCRIBE_REMOTES`` entry."""

    scheme: str | None
    host: str  # lower case, brackets stripped; may hold '*'
    port: int | None
    path: str | None

    @classmethod
    def parse(cls, text: str) -> Entry:
        text = text.strip()
        parts = urlsplit(text if "://" in text else "//" + text)
        try:
            port = parts.port
        except ValueError:
            port = None
        return cls(parts.scheme.lower() or None, (parts.hostname or "").lower(), port, parts.path.rstrip("/") or None)

    def matches(self, scheme: str, host: str, port: int, path: str) -> bool:
        if self.scheme and self.scheme != scheme:
            return False
        if not fnmatch.fnmatchcase(host, self.host):
            return False
        if self.port is not None and self.port != port:
            return False
        return path in _OPEN_PATHS if self.path is None else path == self.path

    @property
    def names_a_private_host(self) -> bool:
        """The owner wrote this machine's or the LAN's address itself: such addresses are meant.
        "Private" as the guard means it (an IPv4 address inside IPv6, 6to4 or NAT64 included, and
        multicast), so an entry the guard would refuse is exactly one that opens the door."""
        if self.host == "localhost":
            return True
        try:
            return refusal(ipaddress.ip_address(self.host), allow_private=False) is not None
        except ValueError:
            return False


def check_remote(url: str, entries: Sequence[str], resolver=resolve) -> str:
    """``url`` (already a full base URL) when the owner allowed it; Forbidden otherwise."""
    parts = urlsplit(url)
    scheme, host = parts.scheme, (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path.rstrip("/")
    if not entries:
        raise Forbidden(
            "remote: this server does not register remote models over the API; its owner can allow "
            "servers with IMGSCRIBE_REMOTES (or run 'imgscribe create --remote' on the server's machine)"
        )
    allowed = [e for e in map(Entry.parse, entries) if e.matches(scheme, host, port, path)]
    if not allowed:
        raise Forbidden(f"remote: {_shown(url)} is not among the servers this server may use (IMGSCRIBE_REMOTES)")
    private_ok = any(e.names_a_private_host for e in allowed)
    try:
        addresses = resolver(host, port)
    except Exception:  # noqa: BLE001 - a name that does not resolve: one sentence, whatever the cause
        raise InvalidRequest(f"remote: cannot find the server {host}") from None
    for address in addresses:
        why = refusal(ipaddress.ip_address(address.split("%")[0]), private_ok)
        if why:
            raise Forbidden(f"remote: refusing {host}: it resolves to {why}")
    return url


def check_key_variable(name: str | None, cfg: Settings) -> None:
    """A client may name only the variables the owner listed, and learns nothing about the others."""
    if name and name not in cfg.remote_keys:
        raise Forbidden(
            "api_key_env: a request may only name the environment variables the server's owner listed "
            "in IMGSCRIBE_REMOTE_KEYS; send the key itself as 'api_key' instead"
        )


def _shown(url: str) -> str:
    return url if len(url) <= 100 else url[:97] + "..."
