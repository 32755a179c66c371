"""Sticky percentage bucketing (DESIGN.md section 5).

``x`` is the first 8 bytes of ``sha256(f"{route}.{salt}.{subject}")`` read as an unsigned
big-endian integer; ``bucket = (x * 100000) >> 64`` lies in ``[0, 100000)``; the subject is in
the candidate's share iff ``bucket < weight``. Raising the weight only adds subjects (a ramp never
reshuffles who is in), and each route has its own salt, so routes bucket independently.
The scheme follows LaunchDarkly's (weights in thousandths of a percent).
"""

from __future__ import annotations

import hashlib

__all__ = ["BUCKETS", "bucket_of", "in_rollout"]

BUCKETS = 100_000
"""Weights and buckets are in thousandths of a percent: 100000 is 100%."""


def bucket_of(route: str, salt: str, subject: str) -> int:
    """The subject's bucket for this route and salt, an integer in ``[0, 100000)``."""
    digest = hashlib.sha256(f"{route}.{salt}.{subject}".encode()).digest()
    x = int.from_bytes(digest[:8], "big")
    return (x * BUCKETS) >> 64


def in_rollout(bucket: int, weight: int) -> bool:
    """True iff a subject in ``bucket`` gets the candidate at ``weight`` (0..100000)."""
    return bucket < weight
