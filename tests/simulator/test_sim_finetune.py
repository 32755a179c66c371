"""The simulator's Files and fine-tuning endpoints, driven by the official ``openai`` SDK.

The app runs in-process, served by uvicorn on a loopback port in a background thread, so the
SDK uses its own HTTP stack unchanged; the job store's monotonic clock is replaced by a fake
one, so timelines advance exactly.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from litestar import Litestar

from gateway.tools.simulator import SimulatorConfig, create_simulator_app
from gateway.tools.simulator.behaviour import ModelBehaviour, SimulatorConfigError
from gateway.tools.simulator.finetune import FineTuneStore
from gateway.tools.simulator.finetune_plan import (
    PACE_ENV,
    FineTuneSettings,
    inspect_training_file,
    plan_timeline,
    settings_from_environment,
)

BASE = "sim-mini"
PROMPT = "You are a support classifier. Respond with one label."


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def training_bytes(count: int = 12, marker_line: int | None = None) -> bytes:
    """``count`` chat examples; the user message of ``marker_line`` holds #fail-finetune."""
    lines = []
    for number in range(1, count + 1):
        ticket = f"Ticket {number}: I was charged twice, please refund me."
        if number == marker_line:
            ticket += " #fail-finetune"
        messages = [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": ticket},
            {"role": "assistant", "content": "billing"},
        ]
        lines.append(json.dumps({"messages": messages}))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def app() -> Litestar:
    config = SimulatorConfig(seed=1, models={BASE: ModelBehaviour(accuracy=0.6)})
    return create_simulator_app(config)


@pytest.fixture
def clock(app: Litestar) -> FakeClock:
    fake = FakeClock()
    store: FineTuneStore = app.state.finetune
    store.clock = fake
    store.settings = FineTuneSettings(seconds=10.0)
    return fake


def serve(app: Litestar) -> Iterator[httpx.Client]:
    """Serve ``app`` on a free loopback port; yield an httpx client with that base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def sdk(http: httpx.Client, api_key: str = "sk-any") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=str(http.base_url).rstrip("/") + "/v1", api_key=api_key, max_retries=0
    )


@pytest.fixture
def http(app: Litestar) -> Iterator[httpx.Client]:
    yield from serve(app)


@pytest.fixture
def client(http: httpx.Client) -> openai.OpenAI:
    return sdk(http)


def upload(client: openai.OpenAI, content: bytes, purpose: Any = "fine-tune") -> str:
    file = client.files.create(file=("train.jsonl", io.BytesIO(content)), purpose=purpose)
    return file.id


def test_upload_returns_an_openai_file_object_that_can_be_retrieved(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    content = training_bytes()
    created = client.files.create(file=("train.jsonl", io.BytesIO(content)), purpose="fine-tune")
    assert created.id.startswith("file-")
    assert (created.object, created.purpose, created.status) == ("file", "fine-tune", "processed")
    assert (created.bytes, created.filename) == (len(content), "train.jsonl")
    assert client.files.retrieve(created.id) == created
    assert http.get(f"/v1/files/{created.id}/content").content == content


def test_unknown_file_is_a_404_and_a_bad_purpose_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.BadRequestError, match="Invalid purpose") as caught:
        upload(client, b"{}", purpose="karaoke")
    assert caught.value.param == "purpose"


def test_files_and_jobs_require_the_configured_key() -> None:
    app = create_simulator_app(SimulatorConfig(api_key="sk-right"))
    for http in serve(app):
        wrong = sdk(http, api_key="sk-wrong")
        with pytest.raises(openai.AuthenticationError):
            upload(wrong, training_bytes())
        with pytest.raises(openai.AuthenticationError):
            wrong.fine_tuning.jobs.list()


def test_a_job_moves_through_its_statuses_and_produces_a_named_model(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    file_id = upload(client, training_bytes(12))
    job = client.fine_tuning.jobs.create(
        model=BASE, training_file=file_id, suffix="triage", metadata={"gateway_route": "r"}
    )
    assert job.id.startswith("ftjob-")
    assert (job.status, job.fine_tuned_model, job.finished_at, job.error) == (
        "validating_files",
        None,
        None,
        None,
    )
    assert job.metadata == {"gateway_route": "r"}
    seen = []
    for seconds in (2.6, 3.6, 6.0, 10.0):
        clock.now = 1000.0 + seconds
        seen.append(client.fine_tuning.jobs.retrieve(job.id).status)
    assert seen == ["queued", "running", "running", "succeeded"]
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:{BASE}:acme:triage:{job.id[-8:]}"
    assert done.finished_at is not None
    assert done.trained_tokens is not None
    assert done.trained_tokens > 0
    assert done.hyperparameters.n_epochs == 3


def test_events_come_newest_first_and_page_with_after_and_limit(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    file_id = upload(client, training_bytes())
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id)
    clock.now += 10
    everything = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # SDK pages
    messages = [event.message for event in everything]
    assert messages[0] == "The job has successfully completed"
    assert messages[-1] == f"Created fine-tuning job: {job.id}"
    assert len({event.id for event in everything}) == len(everything) == 10
    metrics = [e for e in everything if e.type == "metrics"]
    assert len(metrics) == 4
    assert all(
        isinstance(e.data, dict) and {"step", "total_steps", "train_loss"} <= e.data.keys()
        for e in metrics
    )
    first = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert first.has_more
    assert [e.id for e in first.data] == [e.id for e in everything[:3]]
    after = client.fine_tuning.jobs.list_events(job.id, limit=100, after=everything[2].id)
    assert [e.id for e in after.data] == [e.id for e in everything[3:]]
    assert not after.has_more


def test_the_produced_model_is_registered_as_a_better_classifier(
    client: openai.OpenAI, clock: FakeClock, http: httpx.Client
) -> None:
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, training_bytes()))
    clock.now += 10
    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model is not None
    behaviours = http.get("/_simulator/models").json()["models"]
    assert behaviours[model]["accuracy"] == 0.97 > behaviours[BASE]["accuracy"]
    assert model in [m.id for m in client.models.list()]
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Please refund the double charge"}]
    )
    assert answer.model == model


def test_a_marker_in_the_training_file_fails_the_job_at_validation(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    file_id = upload(client, training_bytes(12, marker_line=7))
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id)
    clock.now += 10
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed"
    assert failed.fine_tuned_model is None
    assert failed.error is not None
    assert (failed.error.code, failed.error.param) == ("invalid_training_file", "training_file")
    assert "line 7" in failed.error.message
    assert "#fail-finetune" in failed.error.message
    newest = client.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
    assert (newest.level, newest.message) == ("error", failed.error.message)


def test_the_suffix_fail_fails_the_job_while_running(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    file_id = upload(client, training_bytes())
    job = client.fine_tuning.jobs.create(model=BASE, training_file=file_id, suffix="fail")
    clock.now += 10
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "training_failed"
    assert "diverged" in failed.error.message


def test_cancel_stops_a_running_job_and_refuses_an_ended_one(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    job = client.fine_tuning.jobs.create(model=BASE, training_file=upload(client, training_bytes()))
    clock.now += 4
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    clock.now += 100
    again = client.fine_tuning.jobs.retrieve(job.id)
    assert (again.status, again.fine_tuned_model) == ("cancelled", None)
    newest = client.fine_tuning.jobs.list_events(job.id, limit=1).data[0]
    assert newest.message == "Fine-tuning job cancelled"
    with pytest.raises(openai.BadRequestError, match="already ended"):
        client.fine_tuning.jobs.cancel(job.id)


def test_jobs_are_listed_newest_first_with_pagination(
    client: openai.OpenAI, clock: FakeClock
) -> None:
    file_id = upload(client, training_bytes())
    ids = [client.fine_tuning.jobs.create(model=BASE, training_file=file_id).id for _ in range(3)]
    page = client.fine_tuning.jobs.list(limit=2)
    assert [job.id for job in page.data] == [ids[2], ids[1]]
    assert page.has_more
    assert [job.id for job in client.fine_tuning.jobs.list()] == ids[::-1]
    rest = client.fine_tuning.jobs.list(limit=2, after=ids[1])
    assert [job.id for job in rest.data] == [ids[0]]


def test_create_refuses_unknown_files_wrong_purposes_and_bad_bodies(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="no such file") as unknown:
        client.fine_tuning.jobs.create(model=BASE, training_file="file-missing")
    assert unknown.value.param == "training_file"
    batch = upload(client, training_bytes(), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="not 'fine-tune'"):
        client.fine_tuning.jobs.create(model=BASE, training_file=batch)
    good = upload(client, training_bytes())
    with pytest.raises(openai.BadRequestError) as long_suffix:
        client.fine_tuning.jobs.create(model=BASE, training_file=good, suffix="x" * 65)
    assert long_suffix.value.param == "suffix"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")


def test_a_bad_limit_is_a_400_naming_limit(http: httpx.Client) -> None:
    response = http.get("/v1/fine_tuning/jobs", params={"limit": "0"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_settings_can_be_read_and_changed_at_run_time(http: httpx.Client) -> None:
    assert http.get("/_simulator/finetune").json()["seconds"] == 3.0
    changed = http.put("/_simulator/finetune", json={"seconds": 1, "accuracy": 0.99})
    assert changed.status_code == 200
    assert (changed.json()["seconds"], changed.json()["accuracy"]) == (1.0, 0.99)
    refused = http.put("/_simulator/finetune", json={"seconds": -1})
    assert refused.status_code == 400
    assert "error" in refused.json()


def test_the_pace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PACE_ENV, "0.5")
    assert settings_from_environment().seconds == 0.5
    monkeypatch.setenv(PACE_ENV, "soon")
    with pytest.raises(SimulatorConfigError, match=PACE_ENV):
        settings_from_environment()


def test_inspect_training_file_names_the_first_problem() -> None:
    assert inspect_training_file(training_bytes(10), "#fail").problem is None
    assert "at least 10" in str(inspect_training_file(training_bytes(3), "#fail").problem)
    one = training_bytes(1)
    assert inspect_training_file(one + b"{oops\n", "#x").problem == "line 2 is not valid JSON"
    assert "line 1 has no 'messages'" in str(inspect_training_file(b'{"a": 1}\n', "#x").problem)


def test_plan_timeline_ends_in_success_unless_told_to_fail() -> None:
    report = inspect_training_file(training_bytes(10), "#fail")
    kwargs: dict[str, Any] = {
        "job_id": "ftjob-1",
        "training_file": "file-1",
        "report": report,
        "fine_tuned_model": "ft:m:o:s:1",
        "n_epochs": 2,
        "metric_steps": 3,
    }
    ok = plan_timeline(suffix=None, **kwargs)
    statuses = [step.status for step in ok if step.status]
    assert statuses == ["validating_files", "queued", "running", "succeeded"]
    assert [step.at for step in ok] == sorted(step.at for step in ok)
    assert ok[-1].at == 1.0
    failing = plan_timeline(suffix="fail", **kwargs)
    assert failing[-1].status == "failed"
    assert failing[-1].error is not None
    assert failing[-1].error["code"] == "training_failed"
