"""Classify a handful of support tickets through the gateway with the official openai SDK.

Run the demo first (README), then::

    python -m examples.classify_tickets

``GATEWAY_URL`` (default http://127.0.0.1:8000/v1) and ``GATEWAY_API_KEY`` (default the demo
key ``sk-demo``) point it elsewhere. Each line shows the label, the variant that answered
(``x-gateway-variant``), why (``x-gateway-decision``) and the tokens the upstream reported.
"""

from __future__ import annotations

import os

from openai import OpenAI

TICKETS = [
    "I was charged twice for my subscription this month, please refund one charge.",
    "The iOS app crashes as soon as I open the reports tab.",
    "I forgot my password and the reset email never arrives.",
    "Can you send me an invoice with our company VAT number?",
    "Your API has returned 502 errors on every request since 9am.",
    "My account was locked after my card payment failed. How do I get back in?",
    "The checkout page froze and now I see two charges on my card. I want a refund.",
    "How do I add a teammate and give them the admin role?",
]


def main() -> None:
    client = OpenAI(
        base_url=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("GATEWAY_API_KEY", "sk-demo"),
        max_retries=0,
    )
    print(f"{'label':<10} {'variant':<10} {'decision':<10} {'in':>5} {'out':>4}  ticket")
    for number, ticket in enumerate(TICKETS):
        raw = client.chat.completions.with_raw_response.create(
            model="support-triage",
            messages=[{"role": "user", "content": ticket}],
            user=f"customer-{number}",
        )
        completion = raw.parse()
        usage = completion.usage
        label = completion.choices[0].message.content or ""
        print(
            f"{label:<10} {raw.headers['x-gateway-variant']:<10} "
            f"{raw.headers['x-gateway-decision']:<10} "
            f"{usage.prompt_tokens if usage else 0:>5} {usage.completion_tokens if usage else 0:>4}"
            f"  {ticket[:60]}"
        )


if __name__ == "__main__":
    main()
