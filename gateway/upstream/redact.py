"""Keep configured secrets out of what the gateway relays from upstreams.

An upstream's error body is relayed to the client (a 400 about the client's request is most
useful verbatim), and some upstreams echo request headers in their errors, ``Authorization``
included: the gateway's own upstream key would reach every client. Every configured secret
(upstream API keys, client keys, admin keys) is replaced by ``[redacted]`` in relayed error
bodies and error events, in its plain and its JSON-escaped spelling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"


class Redactor:
    """Replaces each of ``secrets`` in bytes or text with :data:`REDACTED`.

    One compiled alternation, longest secret first (so a key that contains another is removed
    whole); without secrets both methods return their input unchanged.
    """

    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str]) -> None:
        spellings: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            escaped = json.dumps(secret)[1:-1]
            spellings.update({secret, escaped, escaped.replace("/", "\\/")})
        ordered = sorted(spellings, key=len, reverse=True)
        self._text = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes = (
            re.compile(b"|".join(re.escape(s.encode()) for s in ordered)) if ordered else None
        )

    def bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced."""
        if self._bytes is None:
            return data
        return self._bytes.sub(REDACTED.encode(), data)

    def text(self, data: str) -> str:
        """``data`` with every secret replaced."""
        if self._text is None:
            return data
        return self._text.sub(REDACTED, data)
