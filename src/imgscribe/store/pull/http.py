"""The pull's HTTP: its client (imgscribe's User-Agent, redirects followed, :data:`TIMEOUT`), what a
status or a failed connection means for the user (:func:`check_response`, :func:`transport_error`)
and which answers are worth another try (:class:`_Retry`)."""

from __future__ import annotations

import httpx

from .errors import Offline, PullError

__all__ = ["TIMEOUT", "check_response", "new_client", "transport_error"]

TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=60.0, pool=None)


def _user_agent() -> str:
    from ...version import __version__

    return f"imgscribe/{__version__} (+https://github.com/imgscribe)"


def new_client(headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        follow_redirects=True,
        timeout=TIMEOUT,
        headers={"User-Agent": _user_agent(), **(headers or {})},
    )


def _host(url: str | httpx.URL) -> str:
    url = httpx.URL(str(url))
    return f"{url.host}:{url.port}" if url.port else url.host


def transport_error(exc: Exception, url: str | httpx.URL) -> PullError:
    """A connection-level failure as a user-facing error (offline, or a broken transfer)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and ("SSL" in detail or "TLS" in detail or "certificate" in detail):
        return PullError(
            f"the secure (https) connection to {_host(url)} failed ({detail}); "
            "if that registry serves plain http, pass --insecure"
        )
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return Offline(_host(url), detail)
    return PullError(f"the transfer from {_host(url)} failed: {detail}; run the pull again to resume")


class _Retry(Exception):
    """A status worth trying again (429, 5xx)."""


def check_response(response: httpx.Response, what: str) -> None:
    """Raise for a status that is not a success: a clear error, or :class:`_Retry`."""
    status = response.status_code
    if status < 300:
        return
    if status == 429 or status >= 500:
        raise _Retry(f"{status} from {_host(response.url)}")
    try:
        response.read()
        body = response.text[:300].strip()
    except httpx.HTTPError:
        body = ""
    if status == 404:
        raise PullError(f"{_host(response.url)} has no {what} (404 at {response.url})")
    if status in (401, 403):
        raise PullError(f"{_host(response.url)} refused access to {what} ({status}{': ' + body if body else ''})")
    if status == 416:
        raise PullError(f"{what} is smaller on {_host(response.url)} than its listing says (416); try again later")
    raise PullError(f"{_host(response.url)} answered {status} for {what}{': ' + body if body else ''}")


def _skip(response: httpx.Response, start: int) -> int:
    """Bytes to drop from a ranged answer: all before ``start`` when the server ignored Range."""
    if response.status_code == 206:
        content_range = response.headers.get("content-range", "")
        try:
            first = int(content_range.split()[1].split("-")[0])
        except (IndexError, ValueError):
            raise _Retry(f"unreadable Content-Range {content_range!r}") from None
        if first != start:
            raise _Retry(f"asked for bytes from {start}, got {content_range!r}")
        return 0
    return start  # 200: the whole file
