"""The simulator's ``/v1/embeddings`` and ``/v1/completions``: the official SDK against it
in-process, and the error paths with raw requests."""

from __future__ import annotations

import math
from typing import Any

import openai
import pytest

from gateway.tools.simulator.embeddings import DEFAULT_DIMENSIONS, embedding_vector, inputs_of
from tests.inprocess_sim import InProcessSimulator

EMBED = "text-embedding-3-small"
INSTRUCT = "gpt-3.5-turbo-instruct"
REFUND = "I was charged twice, please refund me."


@pytest.fixture
def client(in_sim: InProcessSimulator) -> openai.OpenAI:
    return in_sim.openai()


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_embeddings_are_deterministic_unit_vectors_with_usage(client: openai.OpenAI) -> None:
    """The SDK asks for base64 by default; the vectors it decodes are the documented ones."""
    first = client.embeddings.create(model=EMBED, input=[REFUND, "The app crashes."])
    again = client.embeddings.create(model=EMBED, input=REFUND, encoding_format="float")
    assert [d.index for d in first.data] == [0, 1]
    vector = first.data[0].embedding
    assert len(vector) == DEFAULT_DIMENSIONS
    assert _norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert vector == pytest.approx(again.data[0].embedding, abs=1e-6)  # float32 vs float64
    assert again.data[0].embedding == embedding_vector(EMBED, REFUND, DEFAULT_DIMENSIONS)
    assert first.data[1].embedding != pytest.approx(vector, abs=1e-3)
    assert first.model == EMBED
    expected = math.ceil(len(REFUND) / 4) + math.ceil(len("The app crashes.") / 4)
    assert first.usage.prompt_tokens == first.usage.total_tokens == expected


def test_embeddings_honour_dimensions_and_token_inputs(client: openai.OpenAI) -> None:
    tokens = client.embeddings.create(model=EMBED, input=[[1, 2, 3], [4, 5]], dimensions=8)
    assert [len(d.embedding) for d in tokens.data] == [8, 8]
    assert tokens.usage.prompt_tokens == 5
    other_model = client.embeddings.create(model="other-embedder", input=REFUND, dimensions=8)
    same_model = client.embeddings.create(model=EMBED, input=REFUND, dimensions=8)
    assert other_model.data[0].embedding != pytest.approx(same_model.data[0].embedding, abs=1e-3)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": EMBED}, "input"),
        ({"model": EMBED, "input": ""}, "input"),
        ({"model": EMBED, "input": [""]}, "input"),
        ({"model": EMBED, "input": [1.5]}, "input"),
        ({"model": EMBED, "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"model": EMBED, "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_embeddings_reject_bad_input_with_the_field(
    in_sim: InProcessSimulator, body: dict[str, Any], param: str
) -> None:
    response = in_sim.http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_embeddings_follow_the_models_behaviour(
    in_sim: InProcessSimulator, client: openai.OpenAI
) -> None:
    in_sim.set_behaviour(EMBED, error_rate=1, error_status=503)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model=EMBED, input=REFUND)
    in_sim.set_behaviour(EMBED, error_rate=0, garbage_rate=1)
    response = in_sim.http.post("/v1/embeddings", json={"model": EMBED, "input": REFUND})
    assert response.status_code == 200
    assert not response.text.rstrip().endswith("}")
    stats = in_sim.stats()["models"][EMBED]
    assert (stats["requests"], stats["errors_injected"], stats["garbage_injected"]) == (2, 1, 1)


def test_completions_answer_the_prompt_like_chat(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=INSTRUCT, prompt=REFUND)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "billing"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == math.ceil(len(REFUND) / 4)
    assert completion.usage.completion_tokens == math.ceil(len("billing") / 4)


def test_completions_stream_with_and_without_usage(
    in_sim: InProcessSimulator, client: openai.OpenAI
) -> None:
    in_sim.set_behaviour(INSTRUCT, mode="echo", stream_chunks=3)
    chunks = list(client.completions.create(model=INSTRUCT, prompt="hello there", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "hello there"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks)
    with_usage = list(
        client.completions.create(
            model=INSTRUCT,
            prompt="hello there",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == math.ceil(len("hello there") / 4)


def test_completions_stream_can_be_cut(in_sim: InProcessSimulator, client: openai.OpenAI) -> None:
    in_sim.set_behaviour(INSTRUCT, cut_stream_after=1)
    with pytest.raises(openai.APIConnectionError):
        list(client.completions.create(model=INSTRUCT, prompt=REFUND, stream=True))
    assert in_sim.stats()["models"][INSTRUCT]["streams_cut"] == 1


def test_completions_reject_a_missing_prompt(in_sim: InProcessSimulator) -> None:
    response = in_sim.http.post("/v1/completions", json={"model": INSTRUCT})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"
    assert "'prompt'" in response.json()["error"]["message"]


def test_inputs_of_counts_text_and_token_prompts() -> None:
    assert inputs_of("abcde") == [("abcde", 2)]
    assert inputs_of([7, 8, 9]) == [("7,8,9", 3)]
    assert inputs_of([[1], "ab"]) == [("1", 1), ("ab", 1)]
