"""``imgscribe serve``: the Ollama-compatible HTTP server, on ``IMGSCRIBE_HOST`` (127.0.0.1:11434)."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import sys

from ..version import __version__
from ..config import HostAddress, parse_host, settings
from ..errors import ImgscribeError, InvalidRequest

GRACEFUL_SHUTDOWN_SECONDS = 5


def serve(host: str | None = None) -> None:
    """Serve until interrupted. ``host`` is parsed like ``IMGSCRIBE_HOST`` (and ``OLLAMA_HOST``)."""
    import uvicorn

    from ..server import create_app
    from ..server.protocol import uvicorn_config

    cfg = settings()
    try:
        address = parse_host(host) if host else cfg.host
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if address.scheme != "http":
        raise InvalidRequest(
            f"imgscribe serve speaks plain http, not {address.scheme}: "
            "set IMGSCRIBE_HOST to an http address and put a TLS proxy in front if you need one"
        )
    log_to_stderr(cfg.debug)
    sock = listen(address)
    sweep_temporaries(cfg.models_dir)
    warning = exposure_warning(address.host, cfg.api_key)
    if warning:
        print(warning, file=sys.stderr)
    config = uvicorn_config(
        create_app(),  # its scheduler unloads every model when the server shuts down
        cfg,
        log_level="debug" if cfg.debug else "info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    print(f"imgscribe {__version__}: Ollama-compatible API on {address.url} (models in {cfg.models_dir})",
          file=sys.stderr)  # fmt: skip
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        pass
    finally:
        sock.close()


def sweep_temporaries(models_dir) -> None:
    """Delete what writers killed with an earlier server left in the store (half an upload or a copy):
    nothing lists it, but it holds disk (see :meth:`~imgscribe.store.blobs.BlobStore.sweep_temporaries`)."""
    from ..store import Store

    freed = Store(models_dir).blobs.sweep_temporaries()
    if freed:
        logging.getLogger("imgscribe.server").info("removed %d bytes of temporary files left by a killed writer", freed)


def log_to_stderr(debug: bool) -> None:
    """imgscribe's own log records on stderr beside uvicorn's: INFO and above, everything with
    IMGSCRIBE_DEBUG (without a handler only warnings reached stderr, through logging's last resort)."""
    log = logging.getLogger("imgscribe")
    if not any(getattr(h, "_imgscribe_serve", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        handler._imgscribe_serve = True
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def exposure_warning(host: str, api_key: str) -> str | None:
    """What to say when the server listens beyond this machine with no API key."""
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback or api_key:
        return None
    return (f"Warning: listening on {host}, reachable from other machines, without an API key: anyone who "
            "can reach it can use and change its models (set IMGSCRIBE_API_KEY)")  # fmt: skip


def listen(address: HostAddress) -> socket.socket:
    """A bound socket, or an error that says which setting to change."""
    where = f"{address.host}:{address.port}"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ImgscribeError(
                f"{where} is already in use (another imgscribe or an Ollama server?). "
                f"Set IMGSCRIBE_HOST to another address, e.g. IMGSCRIBE_HOST=127.0.0.1:{address.port + 1}"
            ) from None
        raise ImgscribeError(f"cannot listen on {where}: {exc.strerror or exc} (set IMGSCRIBE_HOST)") from None
    logging.getLogger("imgscribe.server").debug("listening on %s", where)
    return sock
