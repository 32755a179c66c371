"""A route's contract (gateway.quality.contract): each check on its own, and ``agree``.

Checks are named as in ``gateway_quality_checks_total{check}``: ``non_empty``, ``max_length``,
``labels`` (after strip and case folding when the route asks for them), ``json_schema`` (valid
JSON and valid against the schema) and ``regex`` (the whole answer). No contract, no checks.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ContractConfig, ToolCallsConfig
from gateway.quality.answer import Answer, ToolCall
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


# -- tool calls -----------------------------------------------------------------------------

LOOKUP = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^A-[0-9]+$"}},
    "required": ["order_id"],
}
TOOLS = {"allowed": {"lookup_order": LOOKUP, "escalate": None}}


def calls(*pairs: tuple[str, str], text: str | None = None) -> Answer:
    return Answer(text, tuple(ToolCall(name, arguments) for name, arguments in pairs))


def test_an_answer_with_tool_calls_is_not_empty() -> None:
    """The issue's case: non_empty alone, an answer that is only tool calls passes."""
    c = Contract(ContractConfig(non_empty=True))
    assert c.check(calls(("anything", "{}"))) == [CheckResult("non_empty", True)]
    assert c.check(calls(("anything", "{}"), text="")) == [CheckResult("non_empty", True)]
    assert c.check(Answer(None)) == [CheckResult("non_empty", False)]
    assert c.check(Answer("  ")) == [CheckResult("non_empty", False)]


def test_a_refusal_is_not_an_answer() -> None:
    """content null with a refusal: non_empty and the text checks fail."""
    c = Contract(ContractConfig(labels=["billing"]))
    assert failed_answer(c, Answer(None, (), "I can't help with that.")) == [
        "non_empty",
        "labels",
    ]


def failed_answer(c: Contract, answer: Answer) -> list[str]:
    return [result.check for result in c.check(answer) if not result.passed]


def test_tool_call_checks_come_last_and_are_named() -> None:
    c = Contract(ContractConfig(labels=["a"], tool_calls=ToolCallsConfig(**TOOLS)))
    assert c.names == ("non_empty", "labels", "tool_call_name", "tool_call_arguments")


@pytest.mark.parametrize(
    ("answer", "failures"),
    [
        (calls(("lookup_order", '{"order_id": "A-17"}')), []),
        (calls(("escalate", '{"any": ["thing"]}')), []),  # null schema: any object
        (calls(("lookup_order", '{"order_id":"A-1"}'), ("escalate", "{}")), []),
        (calls(("refund", '{"order_id": "A-17"}')), ["tool_call_name"]),
        (calls(("lookup_order", '{"order_id": 17}')), ["tool_call_arguments"]),
        (calls(("lookup_order", "{}")), ["tool_call_arguments"]),  # required field missing
        (calls(("lookup_order", '{"order_id": "A-1"')), ["tool_call_arguments"]),  # cut JSON
        (calls(("escalate", "[1, 2]")), ["tool_call_arguments"]),  # not an object
        (calls(("escalate", "")), ["tool_call_arguments"]),
        (calls(("refund", "nope")), ["tool_call_name", "tool_call_arguments"]),
        # one bad call among good ones fails the answer
        (calls(("escalate", "{}"), ("lookup_order", '{"order_id": "B-2"}')),
         ["tool_call_arguments"]),
        (calls(("", "")), ["tool_call_name", "tool_call_arguments"]),  # not a function call
    ],
)  # fmt: skip
def test_tool_calls_must_name_allowed_functions_with_valid_arguments(
    answer: Answer, failures: list[str]
) -> None:
    c = Contract(ContractConfig(tool_calls=ToolCallsConfig(**TOOLS)))
    assert failed_answer(c, answer) == failures
    assert [r.check for r in c.check(answer)] == list(c.names)


def test_an_empty_allowed_list_forbids_every_tool_call() -> None:
    c = Contract(ContractConfig(non_empty=False, tool_calls=ToolCallsConfig(allowed={})))
    assert failed_answer(c, calls(("lookup_order", "{}"))) == ["tool_call_name"]
    assert c.check(Answer("billing")) == []  # a text answer has nothing to call


def test_text_checks_skip_an_answer_that_only_calls_tools() -> None:
    """A label route whose answer is a tool call: labels are not judged (no text); with
    tool_calls in the contract the call is; text and calls together are both judged."""
    c = Contract(ContractConfig(labels=["billing"], max_length=10, regex="b.*",
                                json_schema={"type": "string"}))  # fmt: skip
    assert c.check(calls(("lookup_order", "{}"))) == [CheckResult("non_empty", True)]
    assert failed_answer(c, calls(("x", "{}"), text="Let me look that up.")) == [
        "max_length",
        "labels",
        "json_schema",
        "regex",
    ]
    with_tools = Contract(ContractConfig(labels=["billing"], tool_calls=ToolCallsConfig(**TOOLS)))
    assert [r.check for r in with_tools.check(calls(("refund", "{}")))] == [
        "non_empty",
        "tool_call_name",
        "tool_call_arguments",
    ]
    assert [r.check for r in with_tools.check(Answer("billing"))] == ["non_empty", "labels"]


def test_json_schema_judges_a_response_format_answer() -> None:
    """A response_format answer is JSON text: the schema judges it like any text."""
    c = contract(json_schema=SCHEMA)
    assert failed_answer(c, Answer('{"label": "billing"}')) == []
    assert failed_answer(c, Answer('{"label": "refund"}')) == ["json_schema"]


def test_plain_text_and_an_answer_of_that_text_are_judged_alike() -> None:
    c = Contract(ContractConfig(labels=["a"], regex="a", max_length=3))
    for text in ("a", "b", "", "abcd"):
        assert c.check(text) == c.check(Answer(text))
    assert c.check(None) == c.check(Answer(None))


def test_agree_compares_tool_calls_by_name_and_parsed_arguments() -> None:
    """Ids never matter (answers carry none); argument spelling does not; names, values,
    order and any text do."""
    c = Contract(ContractConfig(tool_calls=ToolCallsConfig(**TOOLS)))
    a = calls(("lookup_order", '{"order_id": "A-1", "n": 1}'))
    assert c.agree(a, calls(("lookup_order", '{ "n":1, "order_id":"A-1" }')))
    assert not c.agree(a, calls(("lookup_order", '{"order_id": "A-2", "n": 1}')))
    assert not c.agree(a, calls(("escalate", '{"order_id": "A-1", "n": 1}')))
    assert not c.agree(a, Answer('{"order_id": "A-1", "n": 1}'))
    assert c.agree(calls(("x", "not json")), calls(("x", "not json")))
    two = calls(("a", "{}"), ("b", "{}"))
    assert not c.agree(two, calls(("b", "{}"), ("a", "{}")))
    assert Contract(None).agree(Answer("hi"), "hi")
    assert not Contract(None).agree(Answer(None), Answer(None))
    assert not Contract(None).agree(Answer(None, (), "no"), Answer(None, (), "no"))


def test_json_null_answers_still_agree() -> None:
    """An answer whose JSON is null is an answer (not a missing one)."""
    c = contract(json_schema={"type": "null"})
    assert c.agree("null", " null ")
