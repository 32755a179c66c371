"""A keyword-scoring support-ticket classifier: the simulator's idea of a "model".

``classify(text)`` maps a ticket to one of ``LABELS`` (``billing``, ``technical``, ``account``).
Each label owns a list of regular-expression cues with a weight; a cue counts once per ticket
however often it occurs, so a long rant about one crash does not outvote a single mention of a
refund. The label with the highest total wins.

Weights encode what the customer is *asking for*, not everything they mention:

* Money words (refund, charged, invoice) weigh 3, symptoms (crash, error, slow) weigh 1 to 2,
  so "I was charged twice after the app crashed" is ``billing``: the crash is context, the
  double charge is the ask.
* Access words (locked, password, 2FA) weigh 3 plus 1 when the ticket says "account", so
  "account locked after failed payment" is ``account``: the customer wants back in.
* "login page not loading" is ``technical``: "not loading" (2) outweighs "login" (1).

Ties are broken by ``TIE_BREAK_ORDER`` (billing, then account, then technical: money and
access are the costlier tickets to misroute). A ticket with no cue at all is ``DEFAULT_LABEL``
(``technical``, the catch-all queue of most support desks).
"""

from __future__ import annotations

import random
import re

__all__ = [
    "DEFAULT_LABEL",
    "INVALID_LABELS",
    "LABELS",
    "TIE_BREAK_ORDER",
    "classify",
    "label_scores",
    "wrong_label",
]

LABELS: tuple[str, ...] = ("billing", "technical", "account")
"""The valid answers of the classifier contract, in a fixed order."""

TIE_BREAK_ORDER: tuple[str, ...] = ("billing", "account", "technical")
"""Preference among labels with equal scores, most preferred first."""

DEFAULT_LABEL = "technical"
"""The answer for a ticket that matches no cue."""

INVALID_LABELS: tuple[str, ...] = (
    "urgent",
    "other",
    "I think this is billing",
    "Billing.",
    "sales",
)
"""Answers outside ``LABELS``, used to simulate a model breaking the output contract."""

# (pattern, weight) per label. Patterns are matched against the lower-cased ticket; `re` keeps
# its own cache of compiled patterns, so nothing is compiled at import time.
_CUES: dict[str, tuple[tuple[str, int], ...]] = {
    "billing": (
        (r"\brefund", 3),
        (r"\binvoice", 3),
        (r"\bcharg(e|ed|es|ing)\b", 3),
        (r"\bbill(ed|ing|s)?\b", 3),
        (r"\b(double|over)[- ]?charg", 3),
        (r"\bpayments?\b|\bpaid\b|\bpay\b", 2),
        (r"\b(credit|debit) card|\bcard\b", 2),
        (r"\bsubscription|\bsubscribe", 2),
        (r"\bprice|\bpricing|\bcost", 2),
        (r"\breceipt|\bdiscount|\bcoupon|\bpromo code", 2),
        (r"\bmoney\b|\$\d|\d+ ?(usd|eur|dollars?)\b", 2),
        (r"\b(upgrade|downgrade|cancel)\b.*\bplan\b|\bplan\b.*\b(upgrade|downgrade)", 1),
    ),
    "technical": (
        (r"\bcrash", 2),
        (r"\berrors?\b", 2),
        (r"\bbug(s|gy)?\b", 2),
        (r"\btime ?outs?\b|\btimed out\b", 2),
        (r"\binstall", 2),
        (r"\bapi\b|\bsdk\b|\bwebhook", 2),
        (r"\b50[0-4]\b|\b404\b", 2),
        (r"\b(not|isn't|won't|doesn't|does not|will not) (load|open|start|respond)", 2),
        (r"\bfreez|\bhangs?\b|\bblank (page|screen)", 2),
        (r"\bslow|\blag", 1),
        (r"\bbroken\b|\bstopped working\b|\b(doesn't|does not|won't) work", 1),
        (r"\bsync|\bupload|\bexport|\bintegration|\bbrowser|\bapp\b", 1),
    ),
    "account": (
        (r"\bpassword|\bpasscode", 3),
        (r"\blocked\b|\block(ed)? out\b|\blockout", 3),
        (r"\b2fa\b|\btwo[- ]factor|\bmfa\b|\bauthenticator", 3),
        (r"\b(change|update|new)\b.{0,20}\bemail|\bemail (address )?change", 3),
        (r"\busername|\buser name", 3),
        (r"\b(delete|close|deactivate|remove)\b.{0,12}\baccount", 3),
        (r"\bprofile|\bverification code|\bverify my", 2),
        (r"\bteammate|\bteam member|\binvit(e|ation)|\broles?\b|\bpermissions?\b", 3),
        (r"\bget back in\b|\bregain access|\b(can't|cannot|can not) access my", 2),
        (r"\baccount\b", 1),
        (r"\blog ?in\b|\bsign ?in\b|\blogged out\b", 1),
    ),
}


def label_scores(text: str) -> dict[str, int]:
    """Score a ticket against every label.

    Args:
        text: the ticket, any case, any length.

    Returns:
        ``{label: score}`` for each label in ``LABELS``; a score is the sum of the weights of
        the cues found in ``text`` (each cue counted at most once), ``0`` when none match.
    """
    lowered = text.lower()
    return {
        label: sum(weight for pattern, weight in _CUES[label] if re.search(pattern, lowered))
        for label in LABELS
    }


def classify(text: str) -> str:
    """Label a support ticket as ``billing``, ``technical`` or ``account``.

    Args:
        text: the ticket text (the last user message of a chat request).

    Returns:
        The highest-scoring label; ties go to the label earliest in ``TIE_BREAK_ORDER``; a
        ticket with no cue gets ``DEFAULT_LABEL``. Pure and deterministic; never raises.
    """
    scores = label_scores(text)
    best = max(scores.values())
    if best == 0:
        return DEFAULT_LABEL
    return next(label for label in TIE_BREAK_ORDER if scores[label] == best)


def wrong_label(correct: str, rng: random.Random) -> str:
    """Pick a valid label different from ``correct``, uniformly with ``rng``.

    Args:
        correct: the right answer; if it is not in ``LABELS`` any valid label may be returned.
        rng: the source of randomness (seeded by the simulator config for reproducible runs).

    Returns:
        A member of ``LABELS`` that is not ``correct``.
    """
    return rng.choice([label for label in LABELS if label != correct])
