"""Simulator config loading, behaviour merging and the per-request outcome plan."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.tools.simulator.behaviour import (
    ModelBehaviour,
    SimulatorConfig,
    SimulatorConfigError,
    load_simulator_config,
    merge_behaviour,
)
from gateway.tools.simulator.classifier import INVALID_LABELS, LABELS
from gateway.tools.simulator.outcome import last_user_text, message_text, plan_outcome

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "simulator.example.yaml"
TICKET = [{"role": "user", "content": "Please refund my last invoice."}]


def test_example_config_loads_with_both_demo_models() -> None:
    config = load_simulator_config(EXAMPLE)
    assert config.models["ft:support-classifier"].accuracy == 0.95
    base = config.models["base-classifier"]
    assert (base.accuracy, base.latency_ms) == (0.85, 40)


def test_unknown_model_gets_the_default_behaviour() -> None:
    config = SimulatorConfig(default=ModelBehaviour(latency_ms=5), models={})
    assert config.behaviour_for("nobody") == ModelBehaviour(latency_ms=5)


def test_empty_config_file_gives_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("")
    assert load_simulator_config(path) == SimulatorConfig()


def test_bad_value_error_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("models:\n  m1:\n    accuracy: 1.5\n")
    with pytest.raises(SimulatorConfigError) as info:
        load_simulator_config(path)
    assert str(path) in str(info.value)
    assert "$.models.m1.accuracy" in str(info.value)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("default:\n  latency: 3\n")
    with pytest.raises(SimulatorConfigError, match="latency"):
        load_simulator_config(path)


@pytest.mark.parametrize("text", ["- a list\n", "key: [unclosed\n"])
def test_non_mapping_or_broken_yaml_is_rejected(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(SimulatorConfigError, match=str(path)):
        load_simulator_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SimulatorConfigError, match="cannot read"):
        load_simulator_config(tmp_path / "absent.yaml")


def test_merge_behaviour_replaces_only_the_given_fields() -> None:
    merged = merge_behaviour(ModelBehaviour(latency_ms=7), {"error_rate": 1, "error_status": 429})
    assert (merged.latency_ms, merged.error_rate, merged.error_status) == (7, 1.0, 429)


@pytest.mark.parametrize(
    "patch", [{"accuracy": -0.1}, {"stream_chunks": 0}, {"mode": "poem"}, {"colour": "red"}]
)
def test_merge_behaviour_rejects_invalid_patches(patch: dict[str, object]) -> None:
    with pytest.raises(SimulatorConfigError):
        merge_behaviour(ModelBehaviour(), patch)


def test_message_text_joins_text_parts_and_ignores_others() -> None:
    parts = {"content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]}
    assert message_text(parts) == "a\nb"
    assert message_text({"content": None}) == ""


def test_last_user_text_skips_later_assistant_messages() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
    ]
    assert last_user_text(messages) == "first"
    assert last_user_text([{"role": "system", "content": "x"}]) == ""


def test_plan_outcome_answers_the_right_label_by_default() -> None:
    outcome = plan_outcome(ModelBehaviour(), TICKET, random.Random(0))
    assert (outcome.kind, outcome.content, outcome.status) == ("answer", "billing", 200)


def test_plan_outcome_with_zero_accuracy_answers_a_wrong_valid_label() -> None:
    rng = random.Random(0)
    for _ in range(20):
        content = plan_outcome(ModelBehaviour(accuracy=0), TICKET, rng).content
        assert content in LABELS
        assert content != "billing"


def test_plan_outcome_invalid_label_rate_one_answers_outside_the_set() -> None:
    outcome = plan_outcome(ModelBehaviour(invalid_label_rate=1), TICKET, random.Random(0))
    assert outcome.content in INVALID_LABELS


def test_plan_outcome_error_and_garbage_rates() -> None:
    error = plan_outcome(ModelBehaviour(error_rate=1, error_status=503), TICKET, random.Random(0))
    assert (error.kind, error.status) == ("error", 503)
    assert plan_outcome(ModelBehaviour(garbage_rate=1), TICKET, random.Random(0)).kind == "garbage"


def test_plan_outcome_echo_mode_repeats_the_last_user_message() -> None:
    outcome = plan_outcome(ModelBehaviour(mode="echo"), TICKET, random.Random(0))
    assert outcome.content == TICKET[0]["content"]


def test_plan_outcome_is_reproducible_with_the_same_seed() -> None:
    behaviour = ModelBehaviour(accuracy=0.5, invalid_label_rate=0.2)
    rng_a, rng_b = random.Random(42), random.Random(42)
    run_a = [plan_outcome(behaviour, TICKET, rng_a).content for _ in range(50)]
    run_b = [plan_outcome(behaviour, TICKET, rng_b).content for _ in range(50)]
    assert run_a == run_b
    assert len(set(run_a)) > 1


def test_null_model_entry_means_all_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("seed: 3\nmodels:\n  plain:\n")
    config = load_simulator_config(path)
    assert config.models == {"plain": ModelBehaviour()}
    assert config.seed == 3


def test_bad_top_level_value_is_located(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("seed: many\n")
    with pytest.raises(SimulatorConfigError, match=r"\$\.seed"):
        load_simulator_config(path)
