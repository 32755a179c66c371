"""The ramp, pure parts: the routes file's ``ramp:``, the decision to move (gateway.quality.ramp)
and the ramp's flag changes (gateway.flags.ramp_changes, and what rollback, release,
registration and a person's weight change do to a ramp in gateway.flags.changes).

The decision advances only when all three hold at the current step (samples, dwell, the
always-valid upper bound of the difference below the margin), waits otherwise with why and
the time left, and never moves a paused, stopped or complete ramp.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config import GuardConfig, RampConfig, load_config
from gateway.errors import ConfigError, ConflictError, UnprocessableError
from gateway.flags import ramp_changes
from gateway.flags.changes import FlagPatch, apply_patch, register_candidate, release, rollback
from gateway.flags.initial import initial_flag
from gateway.flags.outcomes import OutcomeCounts
from gateway.quality.ramp import decide_ramp, difference_upper_bound
from gateway.quality.stats import lower_bound, upper_bound
from gateway.routing import FlagState

ROUTE = "triage"
T0 = 1_700_000_000.0
RAMP = RampConfig(steps=[10_000, 50_000, 100_000], min_samples=200, min_dwell_s=600)
POLICY = GuardConfig()  # margin 0.02, alpha 0.05
HEALTHY = OutcomeCounts(cand_n=5_000, cand_f=0, fb_n=45_000, fb_f=0)
"""Enough flawless outcomes on both sides for the bound to be far below the margin."""


def flag(**changes: object) -> FlagState:
    """Active, ramping at step 0 (10%) since T0 with baseline 0, version 4."""
    base = FlagState(
        route=ROUTE,
        weight=10_000,
        rollout_id="ro_a",
        version=4,
        ramp_step=0,
        ramp_step_started_at=T0,
    )
    return msgspec.structs.replace(base, **changes)


# -- config ---------------------------------------------------------------------------------

ROUTES = """
upstreams:
  up: {{base_url: http://up.test/v1}}
routes:
  triage:
    variants:
      cand: {{upstream: up, model: c}}
      fall: {{upstream: up, model: f}}
    candidate: cand
    fallback: fall
{extra}
"""


def load(tmp_path: Path, extra: str) -> RampConfig | None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES.format(extra=extra))
    return load_config(path).routes["triage"].ramp


def problems(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    return "\n".join(info.value.problems)


def test_config_takes_steps_as_weights_or_percentages(tmp_path: Path) -> None:
    ramp = load(
        tmp_path,
        "    guard: {}\n    ramp: {steps: ['10%', 50000, '100%'], min_samples: 5, min_dwell_s: 0}",
    )
    assert ramp == RampConfig(steps=[10_000, 50_000, 100_000], min_samples=5, min_dwell_s=0)


def test_config_defaults_and_a_last_step_below_100_percent(tmp_path: Path) -> None:
    ramp = load(tmp_path, "    guard: {}\n    ramp: {steps: ['0.5%', '25%']}")
    assert ramp == RampConfig(steps=[500, 25_000], min_samples=200, min_dwell_s=600)


@pytest.mark.parametrize(
    ("ramp", "expected"),
    [
        ("{steps: [50000, 10000]}", "routes.triage.ramp.steps: Value error, steps must be"),
        ("{steps: [10000, 10000]}", "strictly increasing"),
        ("{steps: [0, 10000]}", "each step must be in (0, 100000]"),
        ("{steps: [10000, 100001]}", "each step must be in (0, 100000]"),
        ("{steps: ['10.0001%']}", "0.001% is the smallest step"),
        ("{steps: ['ten%']}", "not a percentage"),
        ("{steps: []}", "routes.triage.ramp.steps"),
        ("{steps: [10000], min_samples: 0}", "routes.triage.ramp.min_samples"),
        ("{steps: [10000], min_dwell_s: -1}", "routes.triage.ramp.min_dwell_s"),
        ("{steps: [10000], dwell: 3}", "routes.triage.ramp.dwell: unknown key"),
    ],
)
def test_config_refuses_bad_ramps_naming_the_key(tmp_path: Path, ramp: str, expected: str) -> None:
    assert expected in problems(tmp_path, f"    guard: {{}}\n    ramp: {ramp}")


def test_config_needs_an_enforcing_guard_and_the_first_step_as_weight(tmp_path: Path) -> None:
    none = problems(tmp_path, "    ramp: {steps: [10000]}")
    assert "routes.triage.ramp: a ramp needs a guard in enforce mode" in none
    observe = problems(tmp_path, "    guard: {mode: observe}\n    ramp: {steps: [10000]}")
    assert "needs a guard in enforce mode" in observe
    weight = problems(
        tmp_path, "    flag: {weight: 30000}\n    guard: {}\n    ramp: {steps: [10000]}"
    )
    assert "routes.triage.flag.weight: the ramp starts at its first step (10000)" in weight
    zero = problems(tmp_path, "    flag: {weight: 0}\n    guard: {}\n    ramp: {steps: [10000]}")
    assert "routes.triage.flag.weight" in zero
    same = load(tmp_path, "    flag: {weight: 10000}\n    guard: {}\n    ramp: {steps: ['10%']}")
    assert same is not None
    shadow = problems(
        tmp_path, "    shadow: {share: 0.5}\n    guard: {}\n    ramp: {steps: [10000]}"
    )
    assert "shadow mode cannot ramp" in shadow


def test_initial_flag_of_a_ramped_route_starts_at_the_first_step(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES.format(extra="    guard: {}\n    ramp: {steps: ['5%', '100%']}"))
    state = initial_flag(load_config(path).routes["triage"])
    assert (state.weight, state.ramp_step, state.ramp_paused) == (5_000, 0, False)
    assert state.ramp_step_started_at is None  # stamped by the guard's first write
    path.write_text(ROUTES.format(extra="    flag: {weight: 7000}"))
    plain = initial_flag(load_config(path).routes["triage"])
    assert (plain.weight, plain.ramp_step) == (7_000, None)


# -- the decision ---------------------------------------------------------------------------


def test_advances_when_samples_dwell_and_bound_all_hold() -> None:
    move = decide_ramp(RAMP, POLICY, flag(), HEALTHY, T0 + 600)
    assert move.action == "advance"
    assert move.state == "ramping"
    assert move.samples == 5_000
    assert move.dwell_remaining_s == 0
    assert move.upper_bound is not None
    assert move.upper_bound < POLICY.margin
    assert "not worse" in move.why


def test_waits_for_the_dwell_with_the_time_left() -> None:
    move = decide_ramp(RAMP, POLICY, flag(), HEALTHY, T0 + 450)
    assert move.action == "wait"
    assert move.dwell_remaining_s == 150
    assert "150 s of the step's 600 s dwell left" in move.why


def test_counts_samples_from_the_step_baseline() -> None:
    """Samples at this step are route-wide candidate outcomes minus the step's baseline."""
    stepped = flag(ramp_step_baseline=4_850)
    move = decide_ramp(RAMP, POLICY, stepped, HEALTHY, T0 + 600)
    assert move.action == "wait"
    assert move.samples == 150
    assert "150 of 200 candidate outcomes at this step" in move.why
    after = decide_ramp(RAMP, POLICY, flag(ramp_step_baseline=4_800), HEALTHY, T0 + 600)
    assert after.action == "advance"
    assert after.samples == 200
    behind = decide_ramp(RAMP, POLICY, flag(ramp_step_baseline=9_999), HEALTHY, T0 + 600)
    assert behind.samples == 0  # a store that lost counts never makes samples negative


def test_waits_while_the_bound_is_at_or_above_the_margin() -> None:
    """A/A at 5% with few outcomes: the interval is too wide to show 'not worse' yet."""
    few = OutcomeCounts(cand_n=300, cand_f=15, fb_n=2_700, fb_f=135)
    move = decide_ramp(RAMP, POLICY, flag(), few, T0 + 600)
    assert move.action == "wait"
    assert move.upper_bound is not None
    assert move.upper_bound >= POLICY.margin
    assert "not yet shown not worse" in move.why


def test_the_bound_is_the_candidates_upper_minus_the_fallbacks_lower_at_half_alpha() -> None:
    counts = OutcomeCounts(cand_n=1_000, cand_f=30, fb_n=9_000, fb_f=450)
    half = 0.025 / 2  # alpha_main = alpha / 2, split over the two sides
    expected = upper_bound(30, 1_000, half) - lower_bound(450, 9_000, half)
    assert difference_upper_bound(POLICY, counts) == pytest.approx(expected, abs=1e-6)
    assert difference_upper_bound(POLICY, OutcomeCounts()) is None


def test_a_worse_candidate_never_advances_however_long_it_runs() -> None:
    worse = OutcomeCounts(cand_n=20_000, cand_f=2_000, fb_n=180_000, fb_f=9_000)  # 10% vs 5%
    move = decide_ramp(RAMP, POLICY, flag(), worse, T0 + 86_400)
    assert move.action == "wait"
    assert move.upper_bound is not None
    assert move.upper_bound > 0.04


def test_never_advances_a_condemned_rollout_or_with_the_kill_switch_off() -> None:
    tripped = decide_ramp(RAMP, POLICY, flag(), HEALTHY, T0 + 600, tripped=True)
    assert tripped.action == "wait"
    assert "guard tripped" in tripped.why
    disabled = decide_ramp(RAMP, POLICY, flag(enabled=False), HEALTHY, T0 + 600)
    assert disabled.action == "wait"
    assert "kill switch" in disabled.why


@pytest.mark.parametrize(
    ("changes", "action", "state"),
    [
        ({"status": "rolled_back"}, "stopped", "stopped"),
        ({"ramp_step": None}, "stopped", "stopped"),
        ({"ramp_paused": True}, "paused", "paused"),
        ({"ramp_step": 2, "weight": 100_000}, "complete", "complete"),
        ({"ramp_step": 7}, "complete", "complete"),  # steps shortened in the routes file
        ({"ramp_step_started_at": None}, "start", "ramping"),
    ],
)
def test_states_that_do_not_advance(changes: dict[str, object], action: str, state: str) -> None:
    move = decide_ramp(RAMP, POLICY, flag(**changes), HEALTHY, T0 + 10_000)
    assert (move.action, move.state) == (action, state)


# -- the ramp's changes ---------------------------------------------------------------------


def test_start_step_stamps_clock_and_baseline_once() -> None:
    unstamped = flag(ramp_step_started_at=None)
    started = ramp_changes.start_step(unstamped, ramp=RAMP, baseline=17, now=T0 + 5)
    assert started.version == 5
    assert started.updated_by == "guard"
    assert (started.ramp_step_started_at, started.ramp_step_baseline) == (T0 + 5, 17)
    assert "step 1 of 3 (10%) began" in started.reason
    assert ramp_changes.start_step(started, ramp=RAMP, baseline=99, now=T0 + 9) is started


def test_advance_moves_to_the_next_weight_with_a_fresh_clock() -> None:
    new = ramp_changes.advance(flag(), ramp=RAMP, baseline=5_000, now=T0 + 700, reason="ok")
    assert (new.weight, new.ramp_step, new.version) == (50_000, 1, 5)
    assert (new.ramp_step_started_at, new.ramp_step_baseline) == (T0 + 700, 5_000)
    assert new.rollout_id == "ro_a"  # one rollout for the whole ramp
    last = flag(ramp_step=2, weight=100_000)
    for stale in (flag(status="rolled_back"), flag(ramp_paused=True), last):
        with pytest.raises(ConflictError) as info:
            ramp_changes.advance(stale, ramp=RAMP, baseline=0, now=T0, reason="x")
        assert info.value.code == "ramp_stopped"


def test_pause_and_resume() -> None:
    paused = ramp_changes.pause(flag(), ramp=RAMP, actor="ops", reason=" hold ", now=T0 + 1)
    assert paused.ramp_paused
    assert paused.reason == "hold"
    assert paused.weight == 10_000
    assert ramp_changes.pause(paused, ramp=RAMP, actor="ops", reason="again", now=T0) is paused
    bumped = apply_patch(paused, FlagPatch(weight=30_000), actor="ops", reason="x", now=T0 + 2)
    resumed = ramp_changes.resume(
        bumped, ramp=RAMP, actor="ops", reason="go", now=T0 + 3, baseline=123
    )
    assert (resumed.weight, resumed.ramp_step, resumed.ramp_paused) == (10_000, 0, False)
    assert (resumed.ramp_step_started_at, resumed.ramp_step_baseline) == (T0 + 3, 123)
    same = ramp_changes.resume(resumed, ramp=RAMP, actor="ops", reason="go", now=T0, baseline=0)
    assert same is resumed


def test_resume_starts_a_ramp_that_never_started() -> None:
    """A ramp added to the routes file after the flag was first written."""
    older = flag(ramp_step=None, ramp_step_started_at=None, weight=40_000)
    started = ramp_changes.resume(older, ramp=RAMP, actor="ops", reason="go", now=T0, baseline=9)
    assert (started.weight, started.ramp_step, started.ramp_paused) == (10_000, 0, False)


def test_pause_and_resume_refuse_a_stopped_ramp_and_need_a_reason() -> None:
    for stopped in (flag(status="rolled_back"), flag(status="rolled_back", ramp_paused=True)):
        with pytest.raises(ConflictError) as info:
            ramp_changes.pause(stopped, ramp=RAMP, actor="ops", reason="x", now=T0)
        assert info.value.code == "ramp_stopped"
    stopped = flag(status="rolled_back")
    with pytest.raises(ConflictError) as info:
        ramp_changes.resume(stopped, ramp=RAMP, actor="ops", reason="x", now=T0, baseline=0)
    assert info.value.code == "rolled_back"
    assert "release" in info.value.message
    with pytest.raises(UnprocessableError):
        ramp_changes.pause(flag(), ramp=RAMP, actor="ops", reason=" ", now=T0)
    with pytest.raises(UnprocessableError) as missing:
        ramp_changes.require_ramp(ROUTE, None)
    assert missing.value.code == "no_ramp"


def test_a_persons_weight_change_pauses_the_ramp_other_changes_do_not() -> None:
    moved = apply_patch(flag(), FlagPatch(weight=20_000), actor="ops", reason="x", now=T0)
    assert moved.ramp_paused
    assert moved.weight == 20_000
    targeted = apply_patch(
        flag(), FlagPatch(candidate_subjects=["qa"]), actor="ops", reason="x", now=T0
    )
    assert not targeted.ramp_paused
    same = apply_patch(flag(), FlagPatch(weight=10_000), actor="ops", reason="x", now=T0)
    assert not same.ramp_paused  # nothing changed: no write, no pause
    plain = FlagState(route=ROUTE, weight=10_000, version=1)
    assert not apply_patch(plain, FlagPatch(weight=5), actor="o", reason="x", now=T0).ramp_paused


def test_rollback_ends_the_ramp_and_release_restarts_it_at_the_first_step() -> None:
    at_two = flag(ramp_step=1, weight=50_000, ramp_step_baseline=900)
    down = rollback(at_two, actor="guard", reason="bad", now=T0)
    assert decide_ramp(RAMP, POLICY, down, HEALTHY, T0).state == "stopped"
    assert down.ramp_step == 1  # where it stopped, for people
    up = release(down, actor="ops", reason="fixed", now=T0 + 5, ramp=RAMP)
    assert (up.weight, up.ramp_step, up.ramp_paused) == (10_000, 0, False)
    assert (up.ramp_step_started_at, up.ramp_step_baseline) == (T0 + 5, 0)
    assert up.rollout_id != down.rollout_id
    held = release(down, actor="ops", reason="fixed", now=T0, weight=0, ramp=RAMP)
    assert (held.weight, held.ramp_step, held.ramp_paused) == (0, 0, True)


def test_registering_a_candidate_holds_the_ramp_paused_at_weight_zero() -> None:
    new = register_candidate(flag(), model="ft:v2", actor="ops", reason="r", now=T0, ramp=RAMP)
    assert (new.weight, new.ramp_step, new.ramp_paused) == (0, 0, True)
    plain = register_candidate(flag(ramp_step=None), model="ft:v2", actor="o", reason="r", now=T0)
    assert plain.ramp_step is None
