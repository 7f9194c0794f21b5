"""Property tests for the image-URL guard (issue 17, "security, kept"): every form of a loopback,
private, link-local or metadata address is refused, whatever way it is written; public addresses
pass. Addresses only: nothing here connects anywhere."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgscribe.errors import ImgscribeError
from imgscribe.server.urls import UrlFetcher, refusal

NOT_PUBLIC = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8")]  # fmt: skip


@st.composite
def inner(draw) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(NOT_PUBLIC))
    return net[draw(st.integers(0, net.num_addresses - 1))]


def forms(ip: ipaddress.IPv4Address) -> list[ipaddress._BaseAddress]:
    """The same IPv4 address as IPv6 carries it: mapped, 6to4, NAT64."""
    n = int(ip)
    return [ip, ipaddress.IPv6Address(f"::ffff:{ip}"), ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),
            ipaddress.IPv6Address((0x64FF9B << 96) | n)]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(inner())
def test_every_form_of_a_non_public_address_is_refused(ip):
    for form in forms(ip):
        assert refusal(form, allow_private=False) is not None, form


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_an_address_is_allowed_only_when_it_and_what_it_carries_are_public(n):
    ip = ipaddress.IPv4Address(n)
    allowed = refusal(ip, allow_private=False) is None
    assert allowed == ip.is_global
    assert all((refusal(form, allow_private=False) is None) == allowed for form in forms(ip))


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f000001", "017700000001",
                                  "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "169.254.169.254", "0251.0376.0251.0376",
                                  "2852039166", "[::]", "0"])  # fmt: skip
def test_numeric_spellings_of_loopback_and_metadata_are_refused(host):
    """Decimal, octal and hex IPv4 forms resolve (glibc's inet_aton) to the address they spell: the
    guard checks what they resolve to, so each is refused before any connection."""
    fetcher = UrlFetcher(enabled=True)
    with pytest.raises(ImgscribeError) as caught:
        fetcher.fetch(f"http://{host}/cat.png")
    message = str(caught.value)
    assert caught.value.status == 400 and "refusing to fetch" in message
    assert any(kind in message for kind in ("loopback", "private", "metadata")), message


def test_the_metadata_address_is_refused_even_with_private_addresses_allowed():
    fetcher = UrlFetcher(enabled=True, allow_private=True)
    for host in ("169.254.169.254", "[::ffff:169.254.169.254]", "2852039166"):
        with pytest.raises(ImgscribeError, match="metadata"):
            fetcher.fetch(f"http://{host}/latest/meta-data/")
