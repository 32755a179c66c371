"""The official OpenAI Node SDK (``openai`` on npm, pinned in tests/node/package-lock.json)
against a gateway and a simulator over real TCP: chat, embeddings, completions, model look-ups.

``scripts/check`` installs the SDK (``npm ci`` in tests/node). Skipped only without ``node``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_passthrough import EMBED, INSTRUCT, ODD_ID, passthrough_routes
from tests.processes import CLIENT_KEY, SimulatorProcess, start_gateway

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed (the Node SDK check needs it)")
def test_the_node_sdk_works_unchanged_through_the_gateway(
    sim: SimulatorProcess, tmp_path: Path
) -> None:
    assert NODE is not None
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), (
        "the Node SDK is not installed: run `npm ci` in tests/node (scripts/check does)"
    )
    with start_gateway(tmp_path, passthrough_routes(sim.url)) as gateway:
        env = {
            **os.environ,
            "GATEWAY_BASE_URL": gateway.base_url,
            "GATEWAY_API_KEY": CLIENT_KEY,
            "ROUTE": "support-triage",
            "EMBED_MODEL": EMBED,
            "INSTRUCT_MODEL": INSTRUCT,
            "ODD_MODEL": ODD_ID,
        }
        done = subprocess.run(
            [NODE, "sdk_check.mjs"],
            cwd=NODE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        events = gateway.log_events("request.completed")
    assert seen["chat"]["content"] == "billing"
    assert seen["chat"]["variant"] in ("finetuned", "prompted")
    assert seen["chat"]["prompt_tokens"] > 0
    assert seen["chat_stream"] == "technical"
    embeddings = seen["embeddings"]
    assert (embeddings["count"], embeddings["decision"]) == (2, "passthrough")
    assert embeddings["dimensions"] > 0
    assert embeddings["norm"] == pytest.approx(1.0, abs=1e-5)
    assert embeddings["prompt_tokens"] == 2 * math.ceil(len("hello") / 4)
    assert seen["completion"]["text"] == "billing"
    assert seen["completion"]["usage"]["completion_tokens"] > 0
    assert seen["completion_stream"] == "billing"
    assert seen["models"]["route"] == "gateway"
    assert seen["models"]["odd"] == ODD_ID
    assert seen["models"]["missing"] == {
        "status": 404,
        "code": "model_not_found",
        "isNotFound": True,
    }
    operations = [e["operation"] for e in events if e["status"] == 200]
    assert sorted(operations) == ["chat", "chat", "completions", "completions", "embeddings"]
