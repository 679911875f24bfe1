"""Fetch user-given URLs without letting them reach the cluster's insides.

A Dataset's URL is chosen by whoever may create Datasets, and the validator Pod runs
inside the cluster: without checks, `https://169.254.169.254/...` would read the cloud
metadata service and `https://10.0.0.5/` an internal service. So every host is resolved
first, every address checked, and the connection goes to the checked address (not to a
second DNS answer), and redirects are followed by hand so each hop is checked again.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_REDIRECTS = 5
_TIMEOUT_SECONDS = 30.0
_CHUNK = 1 << 16

_METADATA_V4 = ipaddress.ip_address("169.254.169.254")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")


class UrlRefused(Exception):
    """The URL may not be fetched (scheme or address); permanent."""


class DownloadTooLarge(Exception):
    """The body is larger than the caller accepts; permanent. Nothing past the limit was written."""

    def __init__(self, url: str, limit: int, size: int | None) -> None:
        said = f"announces {size:,} bytes" if size is not None else "went past it"
        super().__init__(f"{url} is larger than the {limit:,}-byte limit: the server {said}")
        self.limit = limit
        self.size = size


class HttpStatusError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"{url} answered HTTP {status}")
        self.status = status


def address_problem(address: IPAddress) -> str | None:
    """Why an address is off limits for user-given URLs; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped)
    if address in (_METADATA_V4, _METADATA_V6):
        return "the cloud metadata service address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local IPv6 address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve host {host!r}: {error.strerror or error}") from error
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    address: IPAddress  # the vetted address the connection goes to


def check_url(url: str, *, allow_private: bool, allow_insecure_http: bool = False,
              resolver: Callable[[str, int], list[IPAddress]] = resolve) -> CheckedUrl:
    """Refuse anything but https to a public address (unless allowed); resolve the host once."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not allow_insecure_http:
        raise UrlRefused(f"refusing {url}: plain http is not allowed, use https:// so the data "
                         "cannot be read or altered on the way")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlRefused(f"refusing {url!r}: only https:// URLs with a host name are supported")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolver(parts.hostname, port)
    if not addresses:
        raise OSError(f"host {parts.hostname!r} resolves to no address")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise UrlRefused(
                    f"refusing {url}: host {parts.hostname} resolves to {address}, {problem}; "
                    "data URLs must point at public addresses (an administrator can allow private "
                    "ones with the operator setting allowPrivateUrls)"
                )
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return CheckedUrl(url, parts.scheme, parts.hostname, port, target, addresses[0])


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a vetted address while verifying the certificate for the host name."""

    def __init__(self, checked: CheckedUrl, context: ssl.SSLContext) -> None:
        super().__init__(checked.host, checked.port, timeout=_TIMEOUT_SECONDS, context=context)
        self._address = str(checked.address)
        self._context_for_host = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context_for_host.wrap_socket(raw, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, checked: CheckedUrl) -> None:
        super().__init__(checked.host, checked.port, timeout=_TIMEOUT_SECONDS)
        self._address = str(checked.address)

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def _open(url: str, *, allow_private: bool, allow_insecure_http: bool,
          headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
    """A GET whose answer is not a redirect (each hop vetted again) and not an error status.

    The caller reads the response and closes the connection.
    """
    context = ssl.create_default_context()
    for _ in range(_MAX_REDIRECTS + 1):
        checked = check_url(url, allow_private=allow_private, allow_insecure_http=allow_insecure_http)
        connection: http.client.HTTPConnection = (
            _PinnedHTTPSConnection(checked, context) if checked.scheme == "https"
            else _PinnedHTTPConnection(checked)
        )
        try:
            connection.request("GET", checked.target, headers={
                "User-Agent": "kubetune-validator", "Accept-Encoding": "identity", **headers,
            })
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise HttpStatusError(response.status, url)
                url = urljoin(url, location)
                connection.close()
                continue
            if response.status >= 400:
                raise HttpStatusError(response.status, url)
            return connection, response, url
        except (http.client.HTTPException, ssl.SSLError) as error:
            connection.close()
            raise OSError(f"fetching {url} failed: {error}") from error
        except BaseException:
            connection.close()
            raise
    raise HttpStatusError(310, url)


def fetch_url(url: str, sink: BinaryIO, *, allow_private: bool, allow_insecure_http: bool = False,
              on_chunk: Callable[[bytes], None] | None = None, max_bytes: int | None = None) -> str:
    """Stream the body into `sink` chunk by chunk; return the final URL after redirects.

    Raises UrlRefused (permanent), DownloadTooLarge (the body passes `max_bytes`: refused from
    its Content-Length before reading, or as soon as the stream passes it), HttpStatusError
    (with the status) or OSError (network).
    `allow_insecure_http` exists for tests on loopback; production callers never set it.
    """
    connection, response, url = _open(url, allow_private=allow_private, allow_insecure_http=allow_insecure_http,
                                      headers={})
    try:
        announced = response.getheader("Content-Length")
        if max_bytes is not None and announced is not None and announced.isdigit() and int(announced) > max_bytes:
            raise DownloadTooLarge(url, max_bytes, int(announced))
        received = 0
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if max_bytes is not None and received > max_bytes:
                raise DownloadTooLarge(url, max_bytes, None)
            sink.write(chunk)
            if on_chunk is not None:
                on_chunk(chunk)
        return url
    except (http.client.HTTPException, ssl.SSLError) as error:
        raise OSError(f"fetching {url} failed: {error}") from error
    finally:
        connection.close()


def probe_url(url: str, *, allow_private: bool, allow_insecure_http: bool = False) -> int | None:
    """Whether the URL answers (same checks and errors as fetch_url), reading at most one byte of it.

    Returns the size the server announces, when it does.
    """
    connection, response, url = _open(url, allow_private=allow_private, allow_insecure_http=allow_insecure_http,
                                      headers={"Range": "bytes=0-0"})
    try:
        total = (response.getheader("Content-Range") or "").rpartition("/")[2]
        length = response.getheader("Content-Length")
        if response.status == 206 and total.isdigit():
            return int(total)
        return int(length) if response.status == 200 and length is not None and length.isdigit() else None
    finally:
        connection.close()
