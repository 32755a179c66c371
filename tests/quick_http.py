"""``httpx.get``/``post``/... for tests, without building a TLS context per call.

``httpx.get(url)`` makes a new ``httpx.Client`` and so a new ``ssl.SSLContext`` loading the CA
bundle: 40-60 ms of CPU per call, more than the call itself against a loopback server. These
helpers keep the rest of ``httpx.request``'s behaviour (a new client and so a new connection per
call, a 5 s default timeout) and hand every client one context built once: test traffic is plain
HTTP to 127.0.0.1 and never uses it.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

__all__ = ["TLS_CONTEXT", "client", "delete", "get", "patch", "post", "put", "request"]

TLS_CONTEXT = ssl.create_default_context()


def client(**options: Any) -> httpx.Client:
    """A new ``httpx.Client`` (connections of its own) sharing :data:`TLS_CONTEXT`."""
    options.setdefault("verify", TLS_CONTEXT)
    return httpx.Client(**options)


def request(method: str, url: str, *, timeout: float | None = 5.0, **kwargs: Any) -> httpx.Response:
    """As ``httpx.request``: one request on a new client, closed afterwards."""
    with client(timeout=timeout) as http:
        return http.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def patch(url: str, **kwargs: Any) -> httpx.Response:
    return request("PATCH", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
