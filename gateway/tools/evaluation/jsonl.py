"""Read a JSONL file as raw lines, streaming, in bounded memory (the I/O edge of validation).

Lines are read as bytes (never decoded here), so a line that is not UTF-8 can be reported with
its number instead of aborting the read. A line longer than ``max_line_bytes`` is not held in
memory: it is skipped in chunks and reported with ``too_long``. The last line of a file that
does not end in a newline has ``terminated`` False (a truncated upload or copy, if it is not
valid JSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["DEFAULT_MAX_LINE_BYTES", "RawLine", "read_lines"]

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
"""A chat example longer than 8 MiB is far beyond any model's context; it is not read."""

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line of the file.

    Attributes:
        number: 1-based line number.
        data: the line without its line ending (``\\n`` or ``\\r\\n``); empty when ``too_long``.
        terminated: False for a last line that does not end in ``\\n``.
        too_long: the line was longer than the limit and was skipped.
        size: the line's length in bytes (without the line ending).
    """

    number: int
    data: bytes
    terminated: bool = True
    too_long: bool = False
    size: int = 0


def read_lines(stream: BinaryIO, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[RawLine]:
    """Yield every line of a binary stream, holding at most ``max_line_bytes`` + 1 MiB at once.

    A file ending in ``\\n`` has no extra empty line after it; an empty file yields nothing.
    """
    number = 0
    while True:
        chunk = stream.readline(max_line_bytes + 1)
        if not chunk:
            return
        number += 1
        if chunk.endswith(b"\n") or len(chunk) <= max_line_bytes:
            terminated = chunk.endswith(b"\n")
            data = chunk.rstrip(b"\n")
            if data.endswith(b"\r"):
                data = data[:-1]
            yield RawLine(number, data, terminated=terminated, size=len(data))
            continue
        size, terminated = len(chunk), False
        while True:  # skip the rest of an over-long line without keeping it
            rest = stream.readline(_CHUNK)
            if not rest:
                break
            if rest.endswith(b"\n"):
                size += len(rest) - 1
                terminated = True
                break
            size += len(rest)
        yield RawLine(number, b"", terminated=terminated, too_long=True, size=size)
