"""This process's replica id: how the flag store tells replicas apart."""

from __future__ import annotations

import os
import secrets
import socket

__all__ = ["new_replica_id"]


def new_replica_id(configured: str | None = None) -> str:
    """``GATEWAY_REPLICA_ID`` if set, else ``HOSTNAME-PID-XXXX`` (unique per process start).

    The random suffix keeps a restarted process (same host name and, in a container, the same
    pid) apart from its previous life, whose counts stay in the store as its own.
    """
    if configured:
        return configured
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
