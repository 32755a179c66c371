"""Redactor: configured secrets never leave in relayed upstream errors."""

from __future__ import annotations

from gateway.upstream.redact import REDACTED, Redactor


def test_every_secret_is_replaced_in_bytes_and_text() -> None:
    """Each configured secret is replaced wherever it appears, any number of times."""
    redactor = Redactor(["sk-upstream-1", "sk-client-2"])
    body = b'{"error": {"message": "Bearer sk-upstream-1 rejected; sk-client-2 sk-upstream-1"}}'
    out = redactor.bytes(body)
    assert b"sk-upstream-1" not in out
    assert b"sk-client-2" not in out
    assert out.count(REDACTED.encode()) == 3
    assert redactor.text("key=sk-client-2") == f"key={REDACTED}"


def test_a_secret_containing_another_is_removed_whole() -> None:
    """Longest first: no tail of the longer secret is left behind."""
    redactor = Redactor(["sk-abc", "sk-abc-longer-key"])
    assert redactor.text("x sk-abc-longer-key y sk-abc") == f"x {REDACTED} y {REDACTED}"


def test_the_json_escaped_spelling_is_replaced_too() -> None:
    """A key with characters JSON escapes (quote, slash) is caught as an upstream echoes it."""
    secret = 'ab/c"d'
    redactor = Redactor([secret])
    assert redactor.bytes(b'{"m": "ab\\/c\\"d"}') == b'{"m": "' + REDACTED.encode() + b'"}'
    assert redactor.bytes(b'{"m": "ab/c\\"d"}') == b'{"m": "' + REDACTED.encode() + b'"}'


def test_without_secrets_the_input_is_returned_unchanged() -> None:
    """No secrets configured (or only empty ones): a no-op."""
    body = b'{"error": {}}'
    assert Redactor([]).bytes(body) is body
    assert Redactor(["", ""]).text("x") == "x"
