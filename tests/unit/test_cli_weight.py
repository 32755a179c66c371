"""``gateway flags`` input and output: weights as percentages and raw thousandths of a percent,
change summaries, the replicas column and restore entries in the history."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from rich.console import Console

from gateway.tools.cli.flag_format import (
    describe_change,
    format_weight,
    history_table,
    parse_weight,
    replicas_summary,
)


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("25%", 25_000),
        ("0.5%", 500),
        ("0.001%", 1),
        ("100%", 100_000),
        ("0%", 0),
        ("12.345%", 12_345),
        ("10.0%", 10_000),
        (".5%", 500),
        (" 7 % ", 7_000),
        ("25000", 25_000),
        ("0", 0),
        ("1", 1),
        ("100000", 100_000),
    ],
)
def test_parse_weight_accepts_percent_and_raw(text: str, weight: int) -> None:
    """A percentage is scaled by 1000; a bare integer is already thousandths of a percent."""
    assert parse_weight(text) == weight


@pytest.mark.parametrize(
    "text",
    [
        "150%",
        "100.001%",
        "100001",
        "-1",
        "-5%",
        "0.0001%",
        "25.5",
        "1e3",
        "1e2%",
        "abc",
        "",
        "%",
        "25%%",
        "0x10",
    ],
)
def test_parse_weight_rejects_with_both_forms_explained(text: str) -> None:
    """Out of range, too precise or not a number: a BadParameter that teaches both forms."""
    with pytest.raises(typer.BadParameter) as info:
        parse_weight(text)
    message = str(info.value)
    assert "25%" in message
    assert "25000" in message
    assert "100000" in message


@pytest.mark.parametrize(
    ("weight", "text"),
    [
        (25_000, "25%"),
        (500, "0.5%"),
        (1, "0.001%"),
        (100_000, "100%"),
        (0, "0%"),
        (12_340, "12.34%"),
        (10, "0.01%"),
    ],
)
def test_format_weight_is_a_short_percentage(weight: int, text: str) -> None:
    """Trailing zeros are dropped, so whole percentages print as integers."""
    assert format_weight(weight) == text


def test_format_then_parse_is_the_identity() -> None:
    """Every weight printed by the CLI can be typed back in."""
    for weight in range(0, 100_001, 37):
        assert parse_weight(format_weight(weight)) == weight
    assert parse_weight(format_weight(100_000)) == 100_000


def test_describe_change_names_each_field_that_changed() -> None:
    """History's ``change`` column: weight as percentages, status, rollout id, list diffs."""
    before = {
        "status": "active",
        "enabled": True,
        "weight": 10_000,
        "rollout_id": "initial",
        "targeting": {"candidate_subjects": ["bob"]},
    }
    after = {
        **before,
        "weight": 100_000,
        "targeting": {"candidate_subjects": ["alice"]},
    }
    assert describe_change(before, after) == "weight 10% -> 100%, candidate_subjects +alice -bob"
    rolled = {**before, "status": "rolled_back"}
    assert describe_change(before, rolled) == "active -> rolled_back"
    assert describe_change(before, {**before, "enabled": False}) == "enabled -> disabled"
    assert describe_change(before, before) == "-"
    assert describe_change(None, before).startswith("registered:")


def test_replicas_summary_names_lagging_replicas_and_snapshot_sources() -> None:
    """``flags list``'s replicas column: a count per version in agreement, then each lagging
    replica and each replica serving its own snapshot by name; ``-`` without heartbeats."""
    ok = {"replica": "gw-a", "version": 7, "source": "store", "lagging": False}
    assert replicas_summary([]) == "-"
    assert replicas_summary([ok, {**ok, "replica": "gw-b"}]) == "2 at v7"
    lagging = {"replica": "gw-c", "version": 6, "source": "store", "lagging": True}
    assert replicas_summary([ok, lagging]) == "1 at v7; gw-c at v6 (lagging)"
    cut_off = {**ok, "replica": "gw-d", "source": "snapshot"}
    assert replicas_summary([ok, cut_off]) == "2 at v7; gw-d from snapshot"


def test_history_table_says_what_a_restore_brought_back() -> None:
    """A restore entry reads 'restored v5 (rolled_back) over no flag' (or over the older
    version the store had), not as a registration."""
    after = {"version": 5, "status": "rolled_back"}
    entries: list[dict[str, Any]] = [
        {"action": "restore", "before": None, "after": after, "at": 0, "reason": "r"},
        {"action": "restore", "before": {"version": 3}, "after": after, "at": 0, "reason": "r"},
    ]
    console = Console(width=200, record=True)
    console.print(history_table("support-triage", entries))
    text = console.export_text()
    assert "restored v5 (rolled_back) over no flag" in text
    assert "restored v5 (rolled_back) over v3" in text
