"""Request ids the gateway makes (``gateway.api.openai.new_request_id``): ``req_`` and 32 hex
digits of ``os.urandom``, each 16 bytes used for one id only, in every thread and in a forked
child (feedback names an answer by its id, so an id must not be guessable or repeated)."""

from __future__ import annotations

import os
import re
import sys
import threading

import pytest

from gateway.api import openai as data_plane
from gateway.api.openai import new_request_id

_ID = re.compile(r"req_[0-9a-f]{32}")


def test_a_client_id_is_kept_when_short_and_printable() -> None:
    assert new_request_id("trace-42") == "trace-42"
    assert _ID.fullmatch(new_request_id("x" * 129))
    assert _ID.fullmatch(new_request_id("caf\u00e9"))
    assert _ID.fullmatch(new_request_id("tab\there"))
    assert _ID.fullmatch(new_request_id(None))


def test_made_ids_come_from_urandom_and_never_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(data_plane, "_random_hex", data_plane._RandomHex())
    monkeypatch.setattr(os, "urandom", counted)
    ids = [new_request_id(None) for _ in range(3 * data_plane._IDS_PER_READ + 1)]
    assert all(_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert reads == [16 * data_plane._IDS_PER_READ] * 4  # 16 bytes an id, each used once


def test_threads_never_share_an_id() -> None:
    made: list[list[str]] = []

    def make() -> None:
        made.append([new_request_id(None) for _ in range(2000)])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    ids = [i for batch in made for i in batch]
    assert len(ids) == 8000
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    new_request_id(None)  # the parent has unused random digits when it forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next ids and leave at once
        os.write(write, " ".join(new_request_id(None) for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 4096).decode().split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    parent = [new_request_id(None) for _ in range(4)]
    assert len(child) == 4
    assert not set(child) & set(parent)
