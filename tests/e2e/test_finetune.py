"""``gateway finetune create|watch`` end to end: the CLI against a simulator and a gateway.

The simulator, the gateway and the CLI run in-process (``tests.inprocess_sim``,
``tests.cli_inprocess``: the CLI's SDK and admin client are bridged to them). The module's
simulator runs fine-tuning jobs in about a second (``PUT /_simulator/finetune``); one gateway
serves the module with the support-triage route at weight 0. The CLI talks to the
simulator with the official SDK (``OPENAI_BASE_URL``) and to the gateway's admin API
(``GATEWAY_URL``, ``GATEWAY_ADMIN_KEY``); its watch state lives in the test's temporary folder.
Data is validated against ``config/gateway.yaml``, whose candidate prompt the sample data uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli_inprocess import run_cli
from tests.inprocess_sim import (
    InProcessGatewayUnderTest,
    InProcessSimulator,
    LoopThread,
    in_process_simulator,
    start_in_process,
)
from tests.processes import ADMIN_KEY, EVAL_KEY, ROOT, routes_yaml

ROUTE = "support-triage"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CONFIG = ROOT / "config" / "gateway.yaml"
TRAIN = ROOT / "examples" / "data" / "support_train.jsonl"
HELDOUT = ROOT / "examples" / "data" / "support_heldout.jsonl"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def fast_jobs(loop_thread: LoopThread) -> Iterator[InProcessSimulator]:
    """The module's simulator, in-process, with one-second fine-tuning jobs."""
    with in_process_simulator(loop_thread) as simulator:
        simulator.http.put("/_simulator/finetune", json={"seconds": 1}).raise_for_status()
        yield simulator


@pytest.fixture(scope="module")
def gateway(
    fast_jobs: InProcessSimulator,
    loop_thread: LoopThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InProcessGatewayUnderTest]:
    tmp = tmp_path_factory.mktemp("finetune-gateway")
    with start_in_process(loop_thread, tmp, routes_yaml(fast_jobs.url, weight=0), fast_jobs) as gw:
        yield gw


def cli(
    *args: str, sim: InProcessSimulator, gateway: InProcessGatewayUnderTest, state: Path
) -> Run:
    """Run ``gateway finetune *args`` in-process with the simulator, gateway and state folder."""
    env = {
        "OPENAI_BASE_URL": sim.base_url,
        "OPENAI_API_KEY": "sk-simulator",
        "GATEWAY_URL": gateway.url,
        "GATEWAY_ADMIN_KEY": ADMIN_KEY,
        "GATEWAY_STATE_DIR": str(state),
        "COLUMNS": "200",
    }
    done = run_cli(
        "finetune",
        *args,
        env=env,
        gateways={gateway.url: gateway},
        simulators={sim.base_url: sim},
    )
    assert "Traceback" not in done.err, done.err
    assert ADMIN_KEY not in done.out + done.err
    return Run(done.code, done.out, done.err)


def create(training: Path, *extra: str, **kw: Any) -> Run:
    return cli(
        "create", "--route", ROUTE, "--training-file", str(training), "--config", str(CONFIG),
        *extra, **kw,
    )  # fmt: skip


def flag(gateway: InProcessGatewayUnderTest) -> dict[str, Any]:
    response = gateway.http.get(f"{gateway.url}/admin/flags/{ROUTE}", headers=ADMIN)
    result: dict[str, Any] = response.json()
    return result


def with_extra_line(tmp_path: Path, ticket: str) -> Path:
    """The sample training data plus one example whose ticket is ``ticket``."""
    first = json.loads(TRAIN.read_text().splitlines()[0])
    messages = [
        first["messages"][0],  # the candidate's system prompt
        {"role": "user", "content": ticket},
        {"role": "assistant", "content": "technical"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text(TRAIN.read_text() + json.dumps({"messages": messages}) + "\n")
    return path


def test_create_then_watch_register_makes_the_model_the_routes_candidate(
    fast_jobs: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    created = create(TRAIN, "--validation-file", str(HELDOUT), "--json", **env)
    assert created.code == 0, created.err
    info = json.loads(created.out)
    job_id = info["job_id"]
    assert job_id.startswith("ftjob-")
    assert (info["route"], info["model"], info["suffix"]) == (ROUTE, "sim-mini", ROUTE)
    assert info["training_file"].startswith("file-")
    assert info["validation_file"].startswith("file-")

    watched = cli("watch", job_id, "--register", "--interval", "0.2", **env)
    assert watched.code == 0, watched.err
    model = f"ft:sim-mini:acme:{ROUTE}:{job_id[-8:]}"
    event_lines = [line for line in watched.out.splitlines() if "  info  " in line]
    assert len(event_lines) == 10, watched.out  # each event once
    assert len({line.split("  info  ", 1)[1] for line in event_lines}) == 10
    assert watched.out.count("training loss=") == 4
    assert f"registered {model} as the candidate of route {ROUTE} at weight 0" in watched.out

    state = flag(gateway)
    assert (state["candidate_model"], state["weight"]) == (model, 0)
    audit = gateway.http.get(
        f"{gateway.url}/admin/audit", params={"route": ROUTE, "limit": 1}, headers=ADMIN
    ).json()["data"][0]
    assert audit["reason"] == f"fine-tuning job {job_id} succeeded"
    assert audit["evidence"]["source"] == f"fine_tuning_job:{job_id}"

    forced = gateway.http.post(
        gateway.base_url + "/chat/completions",
        json={
            "model": ROUTE,
            "messages": [{"role": "user", "content": "Refund the double charge"}],
        },
        headers={"authorization": f"Bearer {EVAL_KEY}", "x-gateway-variant": "finetuned"},
    )
    assert forced.status_code == 200, forced.text
    assert forced.headers["x-gateway-variant"] == "finetuned"
    assert forced.json()["model"] == ROUTE  # response_model: route hides the model's id
    assert fast_jobs.stats()["models"][model]["requests"] == 1  # the registered model answered

    again = cli("watch", job_id, "--register", "--interval", "0.2", **env)
    assert again.code == 0, again.err
    assert "Created fine-tuning job" not in again.out
    assert "training loss" not in again.out
    assert f"succeeded: fine-tuned model {model}" in again.out
    assert "already is the candidate" in again.out
    assert flag(gateway)["version"] == state["version"]  # not registered a second time


def test_watch_json_prints_each_event_once_then_the_result(
    fast_jobs: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    job_id = create(TRAIN, **env).out.strip()
    watched = cli("watch", job_id, "--interval", "0.1", "--json", **env)
    assert watched.code == 0, watched.err
    lines = [json.loads(line) for line in watched.out.splitlines()]
    events, result = lines[:-1], lines[-1]
    assert all(event["object"] == "fine_tuning.job.event" for event in events)
    assert len({event["id"] for event in events}) == len(events) == 10
    assert result["object"] == "gateway.finetune.result"
    assert (result["job_id"], result["status"], result["registration"]) == (
        job_id,
        "succeeded",
        None,
    )


@pytest.mark.parametrize(
    ("how", "message"),
    [("marker", "#fail-finetune"), ("suffix", "diverged")],
)
def test_a_failing_job_exits_1_with_its_error_message(
    fast_jobs: InProcessSimulator,
    gateway: InProcessGatewayUnderTest,
    tmp_path: Path,
    how: str,
    message: str,
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    before = flag(gateway)
    if how == "marker":
        created = create(with_extra_line(tmp_path, "It crashes on start #fail-finetune"), **env)
    else:
        created = create(TRAIN, "--suffix", "fail", **env)
    assert created.code == 0, created.err
    job_id = created.out.strip()
    watched = cli("watch", job_id, "--register", "--interval", "0.2", **env)
    assert watched.code == 1
    assert f"job {job_id} failed" in watched.err
    assert message in watched.err
    assert flag(gateway)["version"] == before["version"]  # nothing registered


def test_a_cancelled_job_exits_1(
    fast_jobs: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    # An hour-long job, so the cancel surely comes first (a one-second job could finish while
    # a loaded machine starts the CLI, and then the watch would see it succeed).
    fast = fast_jobs.http.get("/_simulator/finetune").json()
    fast_jobs.http.put("/_simulator/finetune", json={"seconds": 3600}).raise_for_status()
    try:
        job_id = create(TRAIN, **env).out.strip()
    finally:
        fast_jobs.http.put("/_simulator/finetune", json=fast).raise_for_status()
    sdk = fast_jobs.openai(api_key="sk-x")
    assert sdk.fine_tuning.jobs.cancel(job_id).status == "cancelled"
    watched = cli("watch", job_id, "--interval", "0.2", **env)
    assert watched.code == 1
    assert "cancelled" in watched.err


def test_create_refuses_an_invalid_training_file(
    fast_jobs: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    jobs_before = fast_jobs.http.get(fast_jobs.base_url + "/fine_tuning/jobs?limit=100").json()[
        "data"
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(TRAIN.read_text() + '{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n')
    refused = create(bad, **env)
    assert refused.code == 1
    assert "refusing to fine-tune: 2 error(s)" in refused.err
    assert "no_assistant_message" in refused.err
    assert "301" in refused.err
    assert "invalid_json" in refused.err
    assert refused.out == ""
    as_json = create(bad, "--json", **env)
    assert as_json.code == 1
    body = json.loads(as_json.err)
    assert body["error"]["exit_code"] == 1
    codes = [(p["line"], p["code"]) for p in body["validation"][0]["problems"]]
    assert codes == [(301, "no_assistant_message"), (302, "invalid_json")]
    jobs_after = fast_jobs.http.get(fast_jobs.base_url + "/fine_tuning/jobs?limit=100").json()[
        "data"
    ]
    assert len(jobs_after) == len(jobs_before)


def test_watch_register_fails_fast_when_the_gateway_refuses_the_key(
    fast_jobs: InProcessSimulator, gateway: InProcessGatewayUnderTest, tmp_path: Path
) -> None:
    env: dict[str, Any] = {"sim": fast_jobs, "gateway": gateway, "state": tmp_path / "state"}
    job_id = create(TRAIN, **env).out.strip()
    watched = cli("watch", job_id, "--register", "--admin-key", "sk-wrong", **env)
    assert watched.code == 5
    assert "admin key" in watched.err
