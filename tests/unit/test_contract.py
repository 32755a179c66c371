"""A route's contract (gateway.quality.contract): each check on its own, and ``agree``.

Checks are named as in ``gateway_quality_checks_total{check}``: ``non_empty``, ``max_length``,
``labels`` (after strip and case folding when the route asks for them), ``json_schema`` (valid
JSON and valid against the schema) and ``regex`` (the whole answer). No contract, no checks.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ContractConfig
from gateway.quality.contract import CheckResult, Contract


def contract(**fields: Any) -> Contract:
    """A contract with ``non_empty`` off unless asked for, so each test sees its own check."""
    fields.setdefault("non_empty", False)
    return Contract(ContractConfig(**fields))


def failed(c: Contract, text: str | None) -> list[str]:
    return [result.check for result in c.check(text) if not result.passed]


def test_no_contract_has_no_checks_and_passes_anything() -> None:
    """Contract(None): no names, no results, even for an empty or missing answer."""
    c = Contract(None)
    assert c.names == ()
    assert c.check("") == []
    assert c.check(None) == []


def test_checks_run_in_the_documented_order() -> None:
    """non_empty, max_length, labels, json_schema, regex: in this order, one result each."""
    c = Contract(
        ContractConfig(labels=["a"], json_schema={"type": "string"}, regex="a", max_length=3)
    )
    assert c.names == ("non_empty", "max_length", "labels", "json_schema", "regex")
    assert [r.check for r in c.check("x")] == list(c.names)


@pytest.mark.parametrize(("text", "passes"), [("x", True), (" ok ", True), ("", False),
                                              ("   \n\t", False)])  # fmt: skip
def test_non_empty_needs_visible_text(text: str, passes: bool) -> None:
    """Whitespace alone is empty."""
    assert contract(non_empty=True).check(text) == [CheckResult("non_empty", passes)]


def test_non_empty_is_on_by_default() -> None:
    """A contract that says nothing else still refuses an empty answer."""
    c = Contract(ContractConfig())
    assert c.names == ("non_empty",)
    assert failed(c, " ") == ["non_empty"]


@pytest.mark.parametrize(("text", "passes"), [("", True), ("abcde", True), ("abcdef", False)])
def test_max_length_counts_characters_up_to_the_limit(text: str, passes: bool) -> None:
    """At most max_length characters (5 here); one more fails."""
    assert contract(max_length=5).check(text) == [CheckResult("max_length", passes)]


def test_labels_match_exactly_by_default_after_strip() -> None:
    """Case-sensitive unless asked; surrounding whitespace is stripped (strip defaults to on)."""
    c = contract(labels=["billing", "technical"])
    assert failed(c, "billing") == []
    assert failed(c, "  technical\n") == []
    assert failed(c, "Billing") == ["labels"]
    assert failed(c, "billing.") == ["labels"]
    assert failed(c, "billing technical") == ["labels"]


def test_labels_fold_case_on_both_sides_when_case_insensitive() -> None:
    """Labels and answers are case-folded: 'BILLING' matches the label 'Billing'."""
    c = contract(labels=["Billing", "Straße"], case_insensitive=True)
    assert failed(c, " BILLING ") == []
    assert failed(c, "billing") == []
    assert failed(c, "STRASSE") == []  # casefold, not lower
    assert failed(c, "account") == ["labels"]


def test_labels_keep_whitespace_when_strip_is_off() -> None:
    """strip: false means an answer with a trailing newline is not the label."""
    c = contract(labels=["billing"], strip=False)
    assert failed(c, "billing") == []
    assert failed(c, "billing\n") == ["labels"]


SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["billing", "technical"]}, "score": {"type": "number"}},
    "required": ["label"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("text", "passes"),
    [
        ('{"label": "billing"}', True),
        ('  {"label": "technical", "score": 0.5}\n', True),
        ('{"label": "refund"}', False),  # not in the enum
        ('{"score": 1}', False),  # required field missing
        ('{"label": "billing", "extra": 1}', False),  # additional property
        ("billing", False),  # not JSON
        ('{"label": "billing"', False),  # truncated JSON
        ("", False),
    ],
)
def test_json_schema_needs_json_that_is_valid_against_the_schema(text: str, passes: bool) -> None:
    """Valid JSON that the schema accepts passes; invalid or non-JSON answers fail."""
    assert contract(json_schema=SCHEMA).check(text) == [CheckResult("json_schema", passes)]


def test_json_schema_uses_the_draft_the_schema_names() -> None:
    """A draft-04 schema keeps draft-04 meaning (boolean exclusiveMaximum); default is 2020-12."""
    draft4 = contract(
        json_schema={
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "number",
            "maximum": 5,
            "exclusiveMaximum": True,
        }
    )
    assert failed(draft4, "4") == []
    assert failed(draft4, "5") == ["json_schema"]
    default = contract(json_schema={"type": "number", "exclusiveMaximum": 5})
    assert failed(default, "4.9") == []
    assert failed(default, "5") == ["json_schema"]


@pytest.mark.parametrize(
    ("text", "passes"),
    [("TCK-123", True), ("TCK-1234", False), ("xTCK-123", False), ("TCK-123\n", False)],
)
def test_regex_must_match_the_whole_answer(text: str, passes: bool) -> None:
    """re.fullmatch: a match inside the answer, or a trailing newline, is not enough."""
    assert contract(regex=r"TCK-\d{3}").check(text) == [CheckResult("regex", passes)]


def test_a_missing_answer_fails_every_check() -> None:
    """check(None), e.g. no content in the upstream's answer: one failed result per check."""
    c = Contract(ContractConfig(labels=["a"], regex="a", max_length=3))
    assert c.check(None) == [CheckResult(name, False) for name in c.names]


def test_several_checks_report_each_failure_by_name() -> None:
    """An answer can fail some checks and pass others; each is reported separately."""
    c = contract(max_length=4, regex=r"[a-z]+")
    assert failed(c, "abcdef") == ["max_length"]
    assert failed(c, "AB") == ["regex"]
    assert failed(c, "ABCDEF") == ["max_length", "regex"]


# -- agree ----------------------------------------------------------------------------------


def test_agree_compares_labels_after_normalisation() -> None:
    """With labels, two answers agree when they are the same label after strip and folding."""
    c = contract(labels=["billing", "account"], case_insensitive=True)
    assert c.agree("Billing", " billing\n")
    assert not c.agree("billing", "account")


def test_agree_compares_parsed_json_not_its_spelling() -> None:
    """With a JSON schema, key order and whitespace do not matter; values do."""
    c = contract(json_schema=SCHEMA)
    assert c.agree('{"label": "billing", "score": 1}', '{ "score":1,"label":"billing" }')
    assert not c.agree('{"label": "billing"}', '{"label": "technical"}')
    assert c.agree("not json", "not json")  # unparsable answers fall back to their text
    assert not c.agree("not json", "other")


def test_agree_compares_text_exactly_without_labels_or_schema() -> None:
    """No labels, no schema (or no contract): the same text, character for character."""
    for c in (contract(regex=".*"), Contract(None)):
        assert c.agree("Hello", "Hello")
        assert not c.agree("Hello", "hello")
        assert not c.agree("Hello", "Hello ")


def test_a_missing_answer_never_agrees() -> None:
    """None agrees with nothing, not even with None."""
    c = contract(labels=["a"])
    assert not c.agree(None, "a")
    assert not c.agree("a", None)
    assert not c.agree(None, None)
