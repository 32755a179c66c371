"""``gateway dataset validate``: every kind of problem, with its line, all in one run.

Most tests call :func:`validate_dataset` on small files written to ``tmp_path``; each file is
padded with ten distinct clean examples so that only the problem under test shows. The command
line is exercised with typer's runner (exit codes, ``--json``, the sample data), and the memory
bound with a 16 MiB file validated in a child process that reports its own peak RSS growth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.config import ContractConfig
from gateway.tools.cli import app
from gateway.tools.evaluation.compact_index import CompactIndex, hash64
from gateway.tools.evaluation.dataset import validate_dataset
from gateway.tools.evaluation.dataset_result import Limits, RouteExpectations, ValidationResult
from gateway.tools.evaluation.jsonl import read_lines

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "You are a support classifier. Respond with one label: billing, technical, or account."
ROUTE = RouteExpectations(
    route="support-triage",
    candidate="finetuned",
    system_prompt=PROMPT,
    contract=ContractConfig(labels=["billing", "technical", "account"], case_insensitive=True),
)
TRAIN = ROOT / "examples" / "data" / "support_train.jsonl"
HELDOUT = ROOT / "examples" / "data" / "support_heldout.jsonl"


def example(ticket: str, label: str = "billing", prompt: str | None = PROMPT) -> str:
    messages: list[dict[str, Any]] = (
        [] if prompt is None else [{"role": "system", "content": prompt}]
    )
    messages += [{"role": "user", "content": ticket}, {"role": "assistant", "content": label}]
    return json.dumps({"messages": messages})


def padding(count: int = 10) -> list[str]:
    return [
        example(f"Clean ticket number {i}: please refund my invoice", "billing")
        for i in range(count)
    ]


def write(tmp_path: Path, lines: list[str], *, name: str = "train.jsonl", end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


def found(result: ValidationResult) -> list[tuple[int | None, str]]:
    """(line, code) of every problem, in report order."""
    return [(p.line, p.code) for p in result.problems]


def check(tmp_path: Path, bad: list[str], **kwargs: Any) -> ValidationResult:
    """Validate ten clean lines followed by ``bad`` (so bad lines start at line 11)."""
    return validate_dataset(write(tmp_path, padding() + bad), **kwargs)


ANSWER = {"role": "assistant", "content": "y"}


def chat(*messages: Any) -> str:
    return json.dumps({"messages": list(messages)})


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"prompt": "x", "completion": "y"}', "missing_messages"),
        ('{"messages": []}', "invalid_messages"),
        ('{"messages": "hello"}', "invalid_messages"),
        (chat("hello", ANSWER), "invalid_message"),
        (chat({"role": "bot", "content": "x"}, ANSWER), "invalid_role"),
        (chat({"content": "x"}, ANSWER), "invalid_role"),
        (chat({"role": "user", "content": 5}, ANSWER), "invalid_content"),
        (chat({"role": "user", "content": ["x"]}, ANSWER), "invalid_content"),
        (chat({"role": "user", "content": "x"}), "no_assistant_message"),
        (chat({"role": "user", "content": "  "}, ANSWER), "empty_content"),
        (chat({"role": "user", "content": "x"}, {**ANSWER, "content": ""}), "empty_content"),
        (chat({"role": "user", "content": "x", "tool": 1}, ANSWER), "unknown_key"),
        (chat({"role": "user", "content": "x"}, {**ANSWER, "weight": 2}), "invalid_weight"),
    ],
)
def test_each_format_problem_is_an_error_on_its_line(tmp_path: Path, line: str, code: str) -> None:
    result = check(tmp_path, [line])
    assert (11, code) in found(result)
    assert all(p.severity == "error" for p in result.problems if p.line == 11)
    assert not result.ok


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    lines = [
        example("My card was charged twice"),  # 1
        "{broken",  # 2
        '{"messages": [{"role": "user", "content": "x"}]}',  # 3
        example("The app crashes on start", "technical"),  # 4
        "",  # 5
        '{"messages": [{"role": "system", "content": 1}, {"role": "user", "content": ""}]}',  # 6
        *padding(),
    ]
    result = validate_dataset(write(tmp_path, lines))
    assert found(result) == [
        (2, "invalid_json"),
        (3, "no_assistant_message"),
        (5, "blank_line"),
        (6, "invalid_content"),
        (6, "empty_content"),
        (6, "no_assistant_message"),
    ]
    assert (result.errors, result.warnings, result.examples, result.lines) == (5, 1, 12, 16)


def test_exact_duplicates_are_warnings_naming_the_first_line(tmp_path: Path) -> None:
    result = check(tmp_path, [example("Refund me"), example("Other ticket"), example("Refund me")])
    assert found(result) == [(13, "duplicate_example")]
    assert "line 11" in result.problems[0].message
    assert result.ok  # warnings only: exit 0


def test_near_identical_inputs_with_different_answers_conflict(tmp_path: Path) -> None:
    bad = [
        example("I can't log in to my account!", "account"),  # 11
        example("The export is broken", "technical"),  # 12
        example("i CAN'T  log in... to my account", "technical"),  # 13
        example("I cant log in to my account", "account"),  # 14: "cant" is another word
        example("I can't log-in to my account.", "account"),  # 15: same answer as 11
    ]
    result = check(tmp_path, bad)
    assert found(result) == [(13, "inconsistent_answer"), (15, "near_duplicate")]
    conflict = result.problems[0]
    assert conflict.severity == "error"
    assert "line 11" in conflict.message
    assert "'technical' here" in conflict.message
    assert "'account' on line 11" in conflict.message


def test_label_distribution_is_counted(tmp_path: Path) -> None:
    bad = [example("Crash on start", "technical"), example("Locked out", "account")]
    result = check(tmp_path, bad)
    assert result.labels == [("billing", 10), ("account", 1), ("technical", 1)]


def test_labels_outside_the_route_contract_are_errors(tmp_path: Path) -> None:
    bad = [
        example("Urgent!!", "urgent"),
        example("Billing", "Billing"),
        example("Hm", "I think billing"),
    ]
    result = check(tmp_path, bad, expectations=ROUTE)
    assert found(result) == [(11, "label_outside_contract"), (13, "label_outside_contract")]
    assert "billing, technical, account" in result.problems[0].message


def test_a_system_prompt_other_than_the_candidates_is_an_error(tmp_path: Path) -> None:
    bad = [
        example("Refund please", prompt="You are a helpful assistant."),
        example("Refund now", prompt=PROMPT + " "),
        example("Refund later", prompt=None),
    ]
    result = check(tmp_path, bad, expectations=ROUTE)
    assert found(result) == [
        (11, "wrong_system_prompt"),
        (12, "wrong_system_prompt"),
        (13, "missing_system_prompt"),
    ]
    assert "whitespace" in result.problems[1].message
    assert "support-triage" in result.problems[0].message


def test_without_a_route_labels_and_prompts_are_not_judged(tmp_path: Path) -> None:
    result = check(tmp_path, [example("Hm", "urgent", prompt="Anything")])
    assert result.ok
    assert found(result) == []


def test_inputs_shared_with_the_holdout_file_are_errors(tmp_path: Path) -> None:
    holdout = write(
        tmp_path,
        [example("Where is my invoice?"), "{oops", example("The app froze", "technical")],
        name="heldout.jsonl",
    )
    bad = [example("WHERE is my invoice"), example("Something else entirely")]
    result = check(tmp_path, bad, holdout=holdout)
    assert found(result) == [(11, "holdout_overlap"), (2, "holdout_line_skipped")]
    assert "line 1 of the held-out file" in result.problems[0].message
    assert result.problems[1].file == str(holdout)
    assert result.problems[1].severity == "warning"


def test_a_truncated_last_line_is_reported_as_truncated(tmp_path: Path) -> None:
    cut = example("The file was cut here")[:25]
    path = write(tmp_path, [*padding(), cut], end="")
    result = validate_dataset(path)
    assert found(result) == [(11, "truncated_line")]
    assert not result.ok


def test_a_last_line_without_newline_is_fine_when_complete(tmp_path: Path) -> None:
    result = validate_dataset(write(tmp_path, padding(), end=""))
    assert result.ok
    assert found(result) == []


def test_invalid_utf8_is_reported_with_its_line_and_the_rest_still_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = [line.encode() for line in padding()]
    bad = example("Cafe charged me twice").encode().replace(b"Cafe", b"Caf\xe9")  # Latin-1
    path.write_bytes(b"\n".join([good[0], bad, *good[1:]]) + b"\n")
    result = validate_dataset(path)
    assert found(result) == [(2, "invalid_utf8")]
    assert "0xe9" in result.problems[0].message
    assert result.examples == 10


def test_an_overlong_line_is_skipped_without_being_held(tmp_path: Path) -> None:
    path = write(tmp_path, [*padding(), example("x" * 5000), example("after the long one")])
    result = validate_dataset(path, max_line_bytes=1000)
    assert found(result) == [(11, "line_too_long")]
    assert result.lines == 12


def test_too_few_examples_is_a_file_level_error(tmp_path: Path) -> None:
    result = validate_dataset(write(tmp_path, padding(3)))
    assert found(result) == [(None, "too_few_examples")]


def test_tokens_are_approximated_per_example_and_in_total(tmp_path: Path) -> None:
    lines = [example("a" * 400, "billing", prompt=None), *padding()]
    result = validate_dataset(write(tmp_path, lines))
    tokens = result.tokens
    assert (tokens.max, tokens.max_line) == (100 + 4 + 2 + 4 + 3, 1)  # ceil(chars/4) + 4 each + 3
    assert tokens.total == sum([tokens.max, *([tokens.min] * 10)])
    assert tokens.examples == 11
    assert "ceil(characters / 4)" in tokens.method


def test_problems_beyond_the_per_kind_limit_are_counted_not_listed(tmp_path: Path) -> None:
    result = check(tmp_path, ["{bad"] * 7, limits=Limits(per_code=3))
    assert [code for _, code in found(result)] == ["invalid_json"] * 3
    assert result.counts["invalid_json"] == 7
    assert result.omitted == {"invalid_json": 4}
    assert result.errors == 7


def test_the_compact_index_stops_growing_at_capacity() -> None:
    index = CompactIndex(capacity=2000)
    for number in range(5000):
        index.setdefault(hash64(str(number)), number)
    assert (len(index), index.full) == (2000, True)
    assert index.get(hash64("1999")) == 1999
    assert index.get(hash64("4999")) is None
    assert index.setdefault(hash64("7"), 99) == 7


def test_read_lines_keeps_line_numbers_and_flags_the_unterminated_last_line() -> None:
    import io

    lines = list(read_lines(io.BytesIO(b"a\r\nb\n\nc")))
    assert [(r.number, r.data, r.terminated) for r in lines] == [
        (1, b"a", True),
        (2, b"b", True),
        (3, b"", True),
        (4, b"c", False),
    ]


# -- the command line --------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["dataset", "validate", *args], env={"COLUMNS": "200"})


def test_the_sample_files_validate_cleanly_against_the_route() -> None:
    config = str(ROOT / "config" / "gateway.yaml")
    result = run(
        str(TRAIN), "--route", "support-triage", "--config", config, "--holdout", str(HELDOUT)
    )
    assert result.exit_code == 0, result.output
    assert "OK:" in result.output
    held = run(str(HELDOUT), "--route", "support-triage", "--config", config, "--json")
    assert held.exit_code == 0, held.output
    report = json.loads(held.output)
    assert (report["ok"], report["errors"], report["warnings"]) == (True, 0, 0)
    assert report["examples"] == 100
    assert {row["label"] for row in report["labels"]} == {"billing", "technical", "account"}


def test_errors_exit_1_and_json_lists_them_with_lines(tmp_path: Path) -> None:
    path = write(tmp_path, [*padding(), "{bad", example("x", "urgent")])
    result = run(
        str(path),
        "--json",
        "--route",
        "support-triage",
        "--config",
        str(ROOT / "config" / "gateway.yaml"),
    )
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert json.loads(result.stderr)["error"]["code"] == "invalid_data"
    assert [(p["line"], p["code"]) for p in report["problems"]] == [
        (11, "invalid_json"),
        (12, "label_outside_contract"),
    ]
    table = run(str(path))
    assert table.exit_code == 1
    assert "invalid_json" in table.output
    assert "error(s)" in table.output


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    path = write(tmp_path, [*padding(), padding()[0]])
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert "duplicate_example" in result.output


def test_an_unknown_route_or_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    config = str(ROOT / "config" / "gateway.yaml")
    unknown = run(str(TRAIN), "--route", "nope", "--config", config)
    assert unknown.exit_code == 2
    assert "support-triage" in unknown.output
    missing = run(str(tmp_path / "absent.jsonl"))
    assert missing.exit_code == 2
    assert "cannot read" in missing.output


# -- memory ------------------------------------------------------------------------------------

_MEASURE = """
import resource, sys
from pathlib import Path
from gateway.tools.evaluation.dataset import validate_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = validate_dataset(Path(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.examples, result.errors, (after - before) * 1024)
"""


def test_a_16_mb_file_validates_in_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS grows by less than half the file (Linux reports ru_maxrss in KiB): a validator
    that held the file, or its parsed lines, would grow by more than the file itself. 16 MiB
    proves it as 50 did (0 bytes of growth measured for both), in a third of the time."""
    path = tmp_path / "big.jsonl"
    size = 0
    count = 0
    with path.open("w", encoding="utf-8") as out:
        while size < 16 * 1024 * 1024:
            ticket = f"Ticket {count}: the dashboard fails " + "and keeps failing again " * (
                count % 40
            )
            line = example(ticket, ("billing", "technical", "account")[count % 3]) + "\n"
            out.write(line)
            size += len(line)
            count += 1
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=ROOT,
    )
    examples, errors, growth = (int(part) for part in proc.stdout.split())
    assert (examples, errors) == (count, 0)
    assert growth < 8 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.1f} MiB"


def test_piped_problems_keep_every_message_whole_one_problem_a_line(tmp_path: Path) -> None:
    """Without a terminal the problems table is tab-separated lines: each message whole."""
    path = write(tmp_path, [*padding(), "{bad", example("x", "urgent-and-a-very-long-label")])
    config = str(ROOT / "config" / "gateway.yaml")
    messages = [
        p["message"]
        for p in json.loads(
            run(str(path), "--json", "--route", "support-triage", "--config", config).stdout
        )["problems"]
    ]
    table = CliRunner().invoke(
        app,
        ["dataset", "validate", str(path), "--route", "support-triage", "--config", config],
        env={"COLUMNS": "80"},
    )
    assert table.exit_code == 1
    rows = [line.split("\t") for line in table.stdout.splitlines() if "\t" in line]
    for message in messages:
        assert any(row[-1] == message for row in rows), (message, table.stdout)
