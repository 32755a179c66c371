"""Numbers as the evaluation report and its gates write them (``-`` for a missing value)."""

from __future__ import annotations

__all__ = ["num", "pct", "pp", "usd"]


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal: 0.8125 -> ``81.2%``."""
    return "-" if value is None else f"{value * 100:.1f}%"


def pp(value: float | None) -> str:
    """A difference of fractions in signed percentage points: -0.02 -> ``-2.0 pp``."""
    return "-" if value is None else f"{value * 100:+.1f} pp"


def num(value: float | None, digits: int = 1, *, sign: bool = False) -> str:
    """A number with ``digits`` decimals (with ``sign``: always signed)."""
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def usd(value: float | None, *, sign: bool = False) -> str:
    """US dollars with four decimals: ``$0.0123`` (with ``sign``: ``+$0.0123``, ``-$0.0123``)."""
    if value is None:
        return "-"
    prefix = ("+" if value >= 0 else "-") if sign else ""
    return f"{prefix}${abs(value):.4f}"
