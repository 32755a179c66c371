"""The keyword classifier labels realistic support tickets the way a person would."""

from __future__ import annotations

import random

import pytest

from gateway.tools.simulator.classifier import (
    DEFAULT_LABEL,
    INVALID_LABELS,
    LABELS,
    classify,
    label_scores,
    wrong_label,
)

TICKETS = [
    ("I was charged twice for my subscription this month, please refund one.", "billing"),
    ("Where can I download the invoice for March? Our accountant needs it.", "billing"),
    ("Your price went up and my card was declined when paying.", "billing"),
    ("I was charged twice after the app crashed during checkout.", "billing"),
    ("The app crashes every time I open the settings screen.", "technical"),
    ("Getting a 500 error from the API when I post to /v1/orders.", "technical"),
    ("The login page is not loading at all, just a blank page.", "technical"),
    ("Install fails on Windows 11 with a timeout after 30 seconds.", "technical"),
    ("Dashboards have been really slow since yesterday's update.", "technical"),
    ("I forgot my password and the reset email never arrives.", "account"),
    ("My account is locked after a failed payment, how do I get back in?", "account"),
    ("I lost my phone and can't pass 2FA anymore.", "account"),
    ("How do I change the email on my profile?", "account"),
    ("Please delete my account and all my data.", "account"),
    ("Can I change my username?", "account"),
]


@pytest.mark.parametrize(("ticket", "expected"), TICKETS)
def test_classify_labels_realistic_tickets(ticket: str, expected: str) -> None:
    assert classify(ticket) == expected


def test_classify_is_case_insensitive() -> None:
    assert classify("REFUND PLEASE") == classify("refund please") == "billing"


def test_classify_without_any_cue_returns_the_default_label() -> None:
    assert classify("Hello, is anybody there?") == DEFAULT_LABEL
    assert classify("") == DEFAULT_LABEL


def test_classify_breaks_ties_in_favour_of_billing() -> None:
    tied = "payment error"  # payment 2 vs error 2: a tie, billing preferred
    scores = label_scores(tied)
    assert scores["billing"] == scores["technical"]
    assert classify(tied) == "billing"


def test_label_scores_counts_each_cue_once() -> None:
    once = label_scores("crash")["technical"]
    assert label_scores("crash crash crash crashed")["technical"] == once


def test_wrong_label_is_always_valid_and_different() -> None:
    rng = random.Random(1)
    for correct in LABELS:
        for _ in range(20):
            wrong = wrong_label(correct, rng)
            assert wrong in LABELS
            assert wrong != correct


def test_wrong_label_reaches_both_other_labels() -> None:
    rng = random.Random(2)
    assert {wrong_label("billing", rng) for _ in range(50)} == {"technical", "account"}


def test_invalid_labels_are_outside_the_label_set() -> None:
    assert INVALID_LABELS
    assert not set(INVALID_LABELS) & set(LABELS)
