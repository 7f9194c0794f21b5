"""Fetching image URLs for clients, guarded against server-side request forgery (SSRF).

Off unless ``IMGSCRIBE_ALLOW_URLS`` is on. Then, for every URL and every redirect:

- only ``http`` and ``https``;
- every address the host name resolves to must be public: loopback, private, link-local, shared
  (CGNAT), multicast, reserved and unspecified addresses are refused unless
  ``IMGSCRIBE_ALLOW_PRIVATE_URLS`` is on; IPv4 addresses inside IPv6 ones are unwrapped first. Cloud
  metadata addresses are refused even then;
- the connection goes to the address that was checked (no second lookup for DNS rebinding to
  exploit), with the name kept for the ``Host`` header and TLS; proxies from the environment are
  not used, since they would connect elsewhere;
- redirects are followed by hand, at most :data:`MAX_REDIRECTS`;
- the whole fetch (connecting, headers, redirects and body together) has one time limit
  (``IMGSCRIBE_URL_TIMEOUT``) that bounds every socket read and write, so a server trickling bytes
  cannot hold it longer (:mod:`imgscribe.wire.transport`); the body has a size limit
  (``IMGSCRIBE_MAX_IMAGE_BYTES``), checked while reading;
- a refusal says which host and why, never the addresses it resolved to (those go to the debug log).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import httpx

from ..config import Settings
from ..errors import ImageTooLarge, InvalidImage, InvalidRequest
from ..wire.transport import DeadlineClient

MAX_REDIRECTS = 5
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA = {ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud
    "fd00:ec2::254",  # AWS over IPv6
)}  # fmt: skip
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
log = logging.getLogger("imgscribe.server")


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidImage(f"cannot fetch the image: host {host!r} not found ({exc.strerror})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), or the address itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(ip: IPAddress, allow_private: bool) -> str | None:
    """Why a connection to ``ip`` is refused, or None when it is allowed."""
    ip = embedded_ipv4(ip)
    if ip in METADATA:
        return "a cloud metadata address"
    if allow_private:
        return None
    for kind, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast),
                       ("unspecified", ip.is_unspecified), ("reserved", ip.is_reserved)):  # fmt: skip
        if flag:
            return f"a {kind} address"
    return None if ip.is_global else "an address that is not public"


class UrlFetcher:
    def __init__(
        self,
        *,
        enabled: bool,
        allow_private: bool = False,
        max_bytes: int = 0,
        timeout: float = 20.0,
        resolver: Resolver = resolve,
    ):
        self.enabled = enabled
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.resolver = resolver

    @classmethod
    def from_settings(cls, cfg: Settings) -> UrlFetcher:
        return cls(
            enabled=cfg.allow_urls,
            allow_private=cfg.allow_private_urls,
            max_bytes=cfg.max_image_bytes,
            timeout=cfg.url_timeout,
        )

    def refusal(self, ip: IPAddress) -> str | None:
        return refusal(ip, self.allow_private)

    def fetch(self, url: str) -> bytes:
        """The bytes at ``url``; InvalidImage/InvalidRequest/ImageTooLarge say what went wrong."""
        if not self.enabled:
            raise InvalidRequest(
                "this server does not fetch image URLs: send the image as base64 or a data: URI, "
                "or start the server with IMGSCRIBE_ALLOW_URLS=1"
            )
        # One deadline for everything below; no timeout of httpx's own per operation.
        with DeadlineClient(self.timeout, timeout=None, follow_redirects=False, trust_env=False, verify=True) as client:
            for _ in range(MAX_REDIRECTS + 1):
                response = self._get(client, url)
                try:
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        url = urljoin(url, location)
                        continue
                    if response.status_code >= 400:
                        raise InvalidImage(f"cannot fetch the image at {_short(url)}: HTTP {response.status_code}")
                    return self._read(response, url)
                finally:
                    response.close()
        raise InvalidImage(f"cannot fetch the image at {_short(url)}: more than {MAX_REDIRECTS} redirects")

    def _get(self, client: DeadlineClient, url: str) -> httpx.Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(f"cannot fetch {_short(url)}: only http and https URLs are accepted")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = self._check(parts.hostname, port)
        target = httpx.URL(url).copy_with(host=address)
        headers = {"Host": parts.netloc.rpartition("@")[2], "User-Agent": "imgscribe", "Accept": "image/*"}
        left = client.deadline.left()
        if left is not None and left <= 0:  # spent on earlier hops
            raise self._timed_out(url)
        request = client.build_request("GET", target, headers=headers, extensions={"sni_hostname": parts.hostname})
        try:
            return client.send(request, stream=True)
        except httpx.TimeoutException:
            raise self._timed_out(url) from None
        except httpx.HTTPError as exc:
            raise InvalidImage(f"cannot fetch the image at {_short(url)}: {exc}") from None

    def _check(self, host: str, port: int) -> str:
        """The address to connect to, after checking every address the name resolves to."""
        addresses = self.resolver(host, port)
        if not addresses:
            raise InvalidImage(f"cannot fetch the image: host {host!r} has no address")
        for address in addresses:
            why = self.refusal(ipaddress.ip_address(address.split("%")[0]))
            if why:
                # The client learns the host and the kind of address, not what the name resolved
                # to: that would map this server's network (and its DNS) for whoever asks.
                log.debug("refused an image URL: %s resolves to %s, %s", host, address, why)
                hint = "" if "metadata" in why else " (set IMGSCRIBE_ALLOW_PRIVATE_URLS=1 to allow it)"
                what = f"{host} is" if _is_address(host) else "it resolves to"
                raise InvalidRequest(f"refusing to fetch an image from {host}: {what} {why}{hint}")
        return addresses[0]

    def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if self.max_bytes > 0 and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(int(declared))
        parts, size = [], 0
        try:
            for part in response.iter_bytes():
                size += len(part)
                if self.max_bytes > 0 and size > self.max_bytes:
                    raise self._too_large(size)
                parts.append(part)
        except httpx.TimeoutException:
            raise self._timed_out(url) from None
        except httpx.HTTPError as exc:
            raise InvalidImage(f"cannot fetch the image at {_short(url)}: {exc}") from None
        return b"".join(parts)

    def _timed_out(self, url: str) -> InvalidImage:
        return InvalidImage(
            f"fetching the image at {_short(url)} took longer than {self.timeout:g}s (IMGSCRIBE_URL_TIMEOUT)"
        )

    def _too_large(self, size: int) -> ImageTooLarge:
        return ImageTooLarge(
            f"the image at the URL is {size:,} bytes or more, over the limit of {self.max_bytes:,} bytes "
            "(set IMGSCRIBE_MAX_IMAGE_BYTES to change it)"
        )


def _is_address(host: str) -> bool:
    """Whether the URL named an address itself (then saying it tells the client nothing new)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _short(url: str) -> str:
    return url if len(url) <= 100 else url[:97] + "..."
