"""DNS-rebinding protection, as Ollama has it: a server listening on loopback only answers requests
whose ``Host`` is this machine (``localhost``, ``*.localhost``, ``*.local``, ``*.internal``, the
host name, or a loopback, private or unspecified address). Otherwise a web page could rebind its
own name to 127.0.0.1 and drive the server from a browser. A server bound to another address is
meant to be reached by name, and answers every host.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


@functools.lru_cache(maxsize=1024)  # per Host value: parsing an address costs more than the rest of the check
def allowed_host(host: str) -> bool:
    host = host.lower().strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host in ("", "localhost", socket.gethostname().lower()) or host.endswith(LOCAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_unspecified


@functools.lru_cache(maxsize=64)  # the address a connection came in on: a few per server
def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _host_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1")
            return host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return ""


class HostCheck:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] == "http" and server and _is_loopback(server[0]) and not allowed_host(_host_of(scope)):
            response = JSONResponse({"error": "forbidden: this server only answers requests for this machine"}, 403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
