"""``gateway eval`` end to end: the CLI against a gateway and a simulator.

The gateway and the simulator run in-process (``tests.inprocess_sim``) and so does the CLI
(``tests.cli_inprocess``; its ``openai.AsyncOpenAI`` is bridged to the gateway). The run stopped
by SIGTERM is a real ``python -m gateway eval`` subprocess against gateway and simulator
processes over TCP.

The held-out files are support tickets whose gold label is
``gateway.tools.simulator.classify(text)``,
so each variant's accuracy is the simulator's ``accuracy`` setting for its model. Every run
checks that no traceback is printed. The simulator's ``/_simulator/stats`` counts what was
actually paid for: resumed runs must not send a finished example again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.tools.simulator import classify, load_simulator_config
from tests.cli_inprocess import run_cli
from tests.e2e.support import AnyGateway
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import (
    CANDIDATE_MODEL,
    CLIENT_KEY,
    EVAL_KEY,
    FALLBACK_MODEL,
    GatewayProcess,
    SimulatorProcess,
    free_port,
    routes_yaml,
    start_gateway,
)

AnySimulator = SimulatorProcess | InProcessSimulator
IN_PROCESS: dict[str, InProcessGatewayUnderTest] = {}
"""In-process gateways by URL: ``gateway eval`` runs in-process against these."""

ROUTE = "support-triage"
TICKETS = (
    "I was charged twice for my subscription",
    "Please refund the extra charge on my card",
    "Where can I download last month's invoice?",
    "The app crashes every time I open it",
    "Uploads fail with a timeout error",
    "The dashboard page is not loading in my browser",
    "I forgot my password and the reset mail never arrives",
    "My account is locked after too many attempts",
    "How do I turn on two-factor authentication?",
    "I need to change the email on my profile",
    "Your API returns errors for every webhook",
    "Can I get a discount if I upgrade my plan?",
    "Please invite a teammate to our workspace",
    "The sync with our integration stopped working",
    "Delete my account and all my data",
    "My payment did not go through but the price went up",
)


@dataclass
class Run:
    """One finished ``gateway eval`` run."""

    code: int
    out: str
    err: str


def write_heldout(path: Path, n: int) -> list[str]:
    """``n`` tickets in fine-tuning format (system, user, gold assistant); returns the golds."""
    golds = []
    with path.open("w") as file:
        for i in range(n):
            text = f"{TICKETS[i % len(TICKETS)]} (ticket {i})"
            gold = classify(text)
            golds.append(gold)
            messages = [
                {"role": "system", "content": "You are a support classifier."},
                {"role": "user", "content": text},
                {"role": "assistant", "content": gold},
            ]
            file.write(json.dumps({"messages": messages}) + "\n")
    return golds


def eval_env(gateway_url: str, config: Path, key: str | None = EVAL_KEY) -> dict[str, str]:
    """The CLI's own variables (a subprocess also gets this process' non-GATEWAY_ ones)."""
    env = {"GATEWAY_URL": gateway_url, "GATEWAY_CONFIG": str(config), "COLUMNS": "220"}
    if key is not None:
        env["GATEWAY_EVAL_KEY"] = key
    return env


def subprocess_env(env: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}, **env}


def eval_cmd(data: Path, out: Path, *args: str) -> list[str]:
    return [
        *(sys.executable, "-m", "gateway", "eval", "--route", ROUTE),
        *("--data", str(data), "--out", str(out), "--no-progress", *args),
    ]


def run_eval(
    data: Path, out: Path, *args: str, url: str, config: Path, key: str | None = EVAL_KEY
) -> Run:
    """Run ``gateway eval`` in this process to completion (against an in-process gateway when
    ``url`` is one, else over the network)."""
    done = run_cli(
        *eval_cmd(data, out, *args)[3:], env=eval_env(url, config, key), gateways=IN_PROCESS
    )
    assert "Traceback" not in done.err, done.err
    return Run(done.code, done.out, done.err)


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


def requests_by_model(sim: AnySimulator) -> dict[str, int]:
    return {name: s["requests"] for name, s in sim.stats()["models"].items()}


def config_of(gateway: AnyGateway) -> Path:
    return gateway.config_path


@contextmanager
def cli_reaches(gw: InProcessGatewayUnderTest) -> Iterator[None]:
    """While open, ``gateway eval`` runs against ``gw.url`` go in-process to ``gw``."""
    IN_PROCESS[gw.url] = gw
    try:
        yield
    finally:
        del IN_PROCESS[gw.url]


@pytest.fixture
def sim(in_sim: InProcessSimulator) -> InProcessSimulator:
    """This test's own simulator, in-process."""
    return in_sim


@pytest.fixture
def gateway(
    sim: InProcessSimulator, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[InProcessGatewayUnderTest]:
    """A gateway in-process on this test's simulator."""
    with (
        start_in_process(loop_thread, tmp_path / "gateway", routes_yaml(sim.url), sim) as gw,
        cli_reaches(gw),
    ):
        yield gw


@pytest.fixture
def tcp(
    simulator: SimulatorProcess, tmp_path: Path
) -> Iterator[tuple[SimulatorProcess, GatewayProcess]]:
    """The session's simulator process (reset before and after) and a gateway process."""
    simulator.reset()
    (tmp_path / "gateway").mkdir()
    with start_gateway(tmp_path / "gateway", routes_yaml(simulator.url)) as gw:
        yield simulator, gw
    simulator.reset()


def test_both_variants_measured_with_intervals_reports_and_gates(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Candidate at 0.95 and fallback at 0.80: both evaluated on every example, each configured
    accuracy inside its 95% interval, both reports written; gates re-checked from the saved
    state without paying again (min-accuracy 0.99 fails with exit 1, max-regression passes).

    The simulator is seeded and the run sequential (--concurrency 1), so the draws, and hence
    the accuracies, are the same on every run: the interval check cannot flake.
    """
    sim_config = tmp_path / "simulator.yaml"
    sim_config.write_text("seed: 20240601\ndefault: {}\nmodels: {}\n")
    n = 120
    data = tmp_path / "heldout.jsonl"
    write_heldout(data, n)
    out = tmp_path / "reports"
    with in_process_simulator(loop_thread, load_simulator_config(sim_config)) as seeded:
        seeded.set_behaviour(CANDIDATE_MODEL, accuracy=0.95)
        seeded.set_behaviour(FALLBACK_MODEL, accuracy=0.80)
        with (
            start_in_process(loop_thread, tmp_path, routes_yaml(seeded.url), seeded) as gw,
            cli_reaches(gw),
        ):
            config = config_of(gw)
            run = run_eval(data, out, "--concurrency", "1", url=gw.url, config=config)
            assert run.code == 0, run.err
            assert requests_by_model(seeded) == {CANDIDATE_MODEL: n, FALLBACK_MODEL: n}

            body = report(out)
            meta = body["meta"]
            assert meta["route"] == ROUTE
            assert meta["n_examples"] == n
            assert meta["data"] == str(data)
            assert meta["variants"]["candidate"] == {"name": "finetuned", "model": CANDIDATE_MODEL}
            assert meta["variants"]["fallback"] == {"name": "prompted", "model": FALLBACK_MODEL}
            assert meta["generated_at"]
            candidate, fallback = body["variants"]["candidate"], body["variants"]["fallback"]
            # Answers name the route (response_model: route); the report names each
            # variant's configured model.
            assert candidate["models_served"] == {CANDIDATE_MODEL: n}
            assert fallback["models_served"] == {FALLBACK_MODEL: n}
            for metrics, configured in ((candidate, 0.95), (fallback, 0.80)):
                assert metrics["n"] == metrics["answered"] == n
                assert metrics["errors"] == 0
                ci = metrics["accuracy_ci"]
                assert ci["lower"] <= configured <= ci["upper"], metrics
                assert ci["lower"] <= metrics["accuracy"] <= ci["upper"]
                assert metrics["contract_pass_rate"] == 1.0
                assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
                assert metrics["cost_per_1k_usd"] > 0
                assert metrics["mean_output_tokens"] > 0
            # The prompted fallback carries a long prompt and few-shot examples.
            assert fallback["mean_input_tokens"] > 5 * candidate["mean_input_tokens"]
            difference = body["difference"]
            assert difference["accuracy"] == pytest.approx(
                candidate["accuracy"] - fallback["accuracy"]
            )
            ci = difference["accuracy_ci"]
            assert ci["lower"] <= difference["accuracy"] <= ci["upper"]
            assert difference["mean_input_tokens"] < 0
            assert body["gates"] == []
            assert body["passed"] is True
            markdown = (out / "report.md").read_text()
            assert "| accuracy [95% CI: Wilson; diff: Newcombe] |" in markdown
            assert "candidate − fallback" in markdown
            assert "accuracy [95% CI" in run.out  # the table on the terminal

            strict = run_eval(data, out, "--min-accuracy", "0.99", url=gw.url, config=config)
            assert strict.code == 1, strict.err
            assert "gate min-accuracy failed" in strict.err
            assert report(out)["passed"] is False
            assert "**FAIL** `min-accuracy`" in (out / "report.md").read_text()

            lenient = run_eval(
                data, out, "--max-regression", "0.02", "--json", url=gw.url, config=config
            )
            assert lenient.code == 0, lenient.err
            printed = json.loads(lenient.out)
            assert [(g["name"], g["passed"]) for g in printed["gates"]] == [
                ("max-regression", True)
            ]
            assert requests_by_model(seeded) == {CANDIDATE_MODEL: n, FALLBACK_MODEL: n}


def _state_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


@pytest.mark.e2e
def test_interrupted_run_resumes_without_paying_twice(
    tcp: tuple[SimulatorProcess, GatewayProcess], tmp_path: Path
) -> None:
    """A --limit run, then a run stopped by SIGTERM mid-way (it finishes what is in flight and
    exits 130), then a run to the end: the simulator served each (example, variant) once.

    Over TCP: the stopped run is a subprocess (a signal to this process could kill pytest)."""
    sim, gateway = tcp
    n = 80
    data = tmp_path / "heldout.jsonl"
    write_heldout(data, n)
    out = tmp_path / "reports"
    state = out / f"heldout.{ROUTE}.eval-state.jsonl"
    config = config_of(gateway)
    sim.set_behaviour(CANDIDATE_MODEL, latency_ms=0)
    sim.set_behaviour(FALLBACK_MODEL, latency_ms=0)

    first = run_eval(data, out, "--limit", "20", url=gateway.url, config=config)
    assert first.code == 0, first.err
    assert report(out)["meta"]["n_examples"] == 20
    assert requests_by_model(sim) == {CANDIDATE_MODEL: 20, FALLBACK_MODEL: 20}
    assert _state_lines(state) == 40

    # Slow answers while the run to stop is in flight: the signal goes once the run recorded
    # its first result (41 lines); 119 are still to go (at least 29 x 300 ms with 4 in flight),
    # so the SIGTERM surely lands mid-run on a loaded machine. Waiting for more results would
    # only cost 75 ms each.
    sim.set_behaviour(CANDIDATE_MODEL, latency_ms=300)
    sim.set_behaviour(FALLBACK_MODEL, latency_ms=300)
    proc = subprocess.Popen(
        eval_cmd(data, out, "--concurrency", "4"),
        env=subprocess_env(eval_env(gateway.url, config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _state_lines(state) <= 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    stopped_at = _state_lines(state)
    assert 40 < stopped_at < 2 * n
    served = requests_by_model(sim)
    assert sum(served.values()) == stopped_at  # everything paid for was recorded

    sim.set_behaviour(CANDIDATE_MODEL, latency_ms=0)
    sim.set_behaviour(FALLBACK_MODEL, latency_ms=0)
    last = run_eval(data, out, url=gateway.url, config=config)
    assert last.code == 0, last.err
    assert f"{stopped_at} of {2 * n} results done" in last.err
    assert requests_by_model(sim) == {CANDIDATE_MODEL: n, FALLBACK_MODEL: n}
    assert _state_lines(state) == 2 * n
    body = report(out)
    assert body["meta"]["resumed_results"] == stopped_at
    assert body["meta"]["sent_results"] == 2 * n - stopped_at
    assert body["variants"]["candidate"]["n"] == body["variants"]["fallback"]["n"] == n


def test_upstream_errors_are_counted_then_retried_on_request(
    sim: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    """Fallback failing 30% of calls: every example still has one result per variant, the
    errors are counted by kind; --retry-errors later sends exactly the failed pairs again."""
    n = 60
    data = tmp_path / "heldout.jsonl"
    write_heldout(data, n)
    out = tmp_path / "reports"
    config = config_of(gateway)
    sim.set_behaviour(FALLBACK_MODEL, error_rate=0.3)

    run = run_eval(data, out, url=gateway.url, config=config)
    assert run.code == 0, run.err
    body = report(out)
    candidate, fallback = body["variants"]["candidate"], body["variants"]["fallback"]
    assert candidate["n"] == fallback["n"] == n
    assert candidate["errors"] == 0
    assert fallback["errors"] > 0
    assert fallback["answered"] + fallback["errors"] == n
    assert sum(fallback["errors_by_kind"].values()) == fallback["errors"]
    assert all(kind.startswith("http_5") for kind in fallback["errors_by_kind"])
    assert fallback["error_rate"] == pytest.approx(fallback["errors"] / n)
    assert body["difference"]["errors"] == -fallback["errors"]
    assert sim.stats()["models"][FALLBACK_MODEL]["errors_injected"] == fallback["errors"]

    sim.set_behaviour(FALLBACK_MODEL, error_rate=0.0)
    again = run_eval(data, out, url=gateway.url, config=config)  # no retry: nothing sent
    assert again.code == 0, again.err
    assert requests_by_model(sim) == {CANDIDATE_MODEL: n, FALLBACK_MODEL: n}
    assert report(out)["variants"]["fallback"]["errors"] == fallback["errors"]

    retried = run_eval(data, out, "--retry-errors", url=gateway.url, config=config)
    assert retried.code == 0, retried.err
    assert requests_by_model(sim) == {CANDIDATE_MODEL: n, FALLBACK_MODEL: n + fallback["errors"]}
    final = report(out)["variants"]["fallback"]
    assert final["errors"] == 0
    assert final["n"] == final["answered"] == n


def test_exit_codes_for_keys_reachability_and_usage(
    sim: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    """5 for a key that may not force variants, a wrong key or none; 3 when nothing listens;
    2 for an unknown route or a held-out file that does not exist; 1 for an invalid held-out
    file (data errors, as ``dataset validate``). No pair is recorded by a refused run."""
    data = tmp_path / "heldout.jsonl"
    write_heldout(data, 5)
    out = tmp_path / "reports"
    config = config_of(gateway)

    not_override = run_eval(data, out, url=gateway.url, config=config, key=CLIENT_KEY)
    assert not_override.code == 5, not_override.err
    assert "GATEWAY_OVERRIDE_KEYS" in not_override.err
    assert CLIENT_KEY not in not_override.err + not_override.out
    wrong = run_eval(data, out, url=gateway.url, config=config, key="sk-wrong")
    assert wrong.code == 5, wrong.err
    missing = run_eval(data, out, url=gateway.url, config=config, key=None)
    assert missing.code == 5, missing.err
    assert "GATEWAY_EVAL_KEY" in missing.err

    nowhere = run_eval(data, out, url=f"http://127.0.0.1:{free_port()}", config=config)
    assert nowhere.code == 3, nowhere.err
    assert "cannot reach the gateway" in nowhere.err

    unknown = run_eval(data, out, "--route", "nope", url=gateway.url, config=config)
    assert unknown.code == 2, unknown.err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "no gold"}]}\n')
    invalid = run_eval(bad, out, url=gateway.url, config=config)
    assert invalid.code == 1, invalid.err
    assert f"{bad}:1" in invalid.err
    as_json = run_eval(bad, out, "--json", url=gateway.url, config=config)
    assert as_json.code == 1, as_json.err
    error = json.loads(as_json.err)["error"]
    assert error["exit_code"] == 1
    assert any(f"{bad}:1" in problem for problem in error["problems"])
    absent = run_eval(tmp_path / "absent.jsonl", out, url=gateway.url, config=config)
    assert absent.code == 2, absent.err
    assert "cannot read" in absent.err

    assert sum(requests_by_model(sim).values()) == 0
    assert (
        not (out / f"heldout.{ROUTE}.eval-state.jsonl").exists()
        or not (out / f"heldout.{ROUTE}.eval-state.jsonl").read_text().strip()
    )
