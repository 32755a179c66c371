"""Send a burst of support tickets through the gateway and print the decision mix.

    python examples/traffic.py --requests 300

Each request has its own subject (``x-gateway-subject``), so the flag's weight splits them;
the summary counts answers by (``x-gateway-decision``, ``x-gateway-variant``). ``GATEWAY_URL``
and ``GATEWAY_API_KEY`` as in classify_tickets.py.
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter

from openai import OpenAI

from examples.classify_tickets import TICKETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    client = OpenAI(
        base_url=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("GATEWAY_API_KEY", "sk-demo"),
        max_retries=0,
    )
    mix: Counter[tuple[str, str]] = Counter()
    rng = random.Random()  # noqa: S311 -- picking demo tickets
    for number in range(args.requests):
        raw = client.chat.completions.with_raw_response.create(
            model="support-triage",
            messages=[{"role": "user", "content": rng.choice(TICKETS)}],
            extra_headers={"x-gateway-subject": f"traffic-{rng.getrandbits(32)}-{number}"},
        )
        mix[(raw.headers["x-gateway-decision"], raw.headers["x-gateway-variant"])] += 1
    for (decision, variant), count in mix.most_common():
        print(f"{count:>6}  {decision:<12} {variant}")


if __name__ == "__main__":
    main()
