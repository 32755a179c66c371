"""Generate the sample dataset: ``support_train.jsonl`` and ``support_heldout.jsonl``.

Tickets are written from hand-made scenarios (several phrasings each, with slots for amounts,
plans, devices, browsers, features...) plus optional greetings, details and sign-offs, combined
with a seeded ``random.Random`` so the output is reproducible. Every line is a chat fine-tuning
example with the candidate's system prompt, read from ``config/gateway.yaml`` so the two never
drift apart, the ticket as the user message and the gold label as the assistant message.

Gold labels are what a support lead would pick (what the customer *asks for*), including the
tricky cases: a refund caused by a crash is ``billing``, an account locked after a failed
payment is ``account``, a login page that does not load is ``technical``. Inputs are unique
after normalisation (case, whitespace, punctuation) across both files, so the held-out file
does not overlap the training file. The script prints how often the simulator's keyword
classifier agrees with the gold labels.

Run from the repository root::

    .venv/bin/python examples/data/make_dataset.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from gateway.config import load_config
from gateway.tools.evaluation.chat_example import normalise
from gateway.tools.simulator.classifier import classify

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
SEED = 20240611
TRAIN, HELDOUT = 300, 100

SLOTS: dict[str, list[str]] = {
    "amount": ["$12.99", "$49", "$240.00", "€29", "£15.50", "$99", "$1,180", "$8.25"],
    "amount2": ["$59", "$310", "€35", "$19.99", "$129"],
    "plan": ["Pro", "Team", "Business", "Starter", "Premium", "Growth"],
    "plan2": ["Enterprise", "Business", "Team", "Pro"],
    "when": [
        "yesterday",
        "this morning",
        "last Tuesday",
        "on the 3rd",
        "on May 14",
        "two days ago",
        "over the weekend",
        "last night",
    ],
    "month": ["March", "last month", "April", "October", "January", "this quarter"],
    "card": ["Visa", "Mastercard", "Amex", "company card", "debit card"],
    "device": ["iPhone 13", "Pixel 7", "Galaxy S22", "iPad Air", "MacBook Pro", "ThinkPad"],
    "os": ["iOS 17", "Android 14", "Windows 11", "macOS Sonoma", "Ubuntu 22.04"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge", "Brave"],
    "feature": [
        "dashboard",
        "reports page",
        "calendar view",
        "project board",
        "analytics tab",
        "inbox",
        "search page",
    ],
    "code": ["500", "502", "504", "404", "503"],
    "version": ["4.2.1", "5.0.3", "3.9.8", "5.1", "4.7.0"],
    "size": ["20 MB", "50 MB", "8 MB", "120 MB"],
    "name": ["Priya", "Marco", "Jen", "Tomás", "Aisha", "Dmitri", "Keiko"],
    "email": ["j.ortiz@newco.io", "sam.lee@gmail.com", "finance@brightpath.org", "ana@studio-k.de"],
    "order": ["48213", "A-9921", "771045", "INV-3310"],
    "customer": ["C-20417", "C-88310", "C-1187", "C-66502"],
    "integration": ["Slack", "Google Calendar", "Salesforce", "Jira", "Zapier", "HubSpot"],
}

SCENARIOS: dict[str, list[list[str]]] = {
    "billing": [
        [
            "I was charged twice for my {plan} subscription {when}. Please refund the duplicate.",
            "My {card} statement shows two charges of {amount} from you {when}, only one is right.",
            "Why did you bill me twice this month? I only have one {plan} plan.",
        ],
        [
            "I cancelled my plan {month} but you still charged me {amount}. I'd like a refund.",
            "We downgraded to {plan} weeks ago and were billed for {plan2} again. Refund please.",
            "Cancelled before renewal and still got charged {amount} {when}. Please reverse it.",
        ],
        [
            "Can you send me an invoice for {month}? Our accounting team needs our VAT number on "
            "it.",
            "The invoice for {month} has our old company address, could you reissue it?",
            "Where can I download past invoices? I need everything since {month} for an audit.",
        ],
        [
            "If we upgrade from {plan} to {plan2} mid-cycle, is the price prorated?",
            "What would it cost to add 15 seats to our {plan} plan?",
            "Is there a discount if we pay for a full year upfront instead of monthly?",
        ],
        [
            "The promo code SPRING20 was not applied at checkout and I paid full price.",
            "I was promised a 30% discount for nonprofits but my last receipt shows the full "
            "{amount}.",
            "Our coupon expired the day before I subscribed, can you still honor it?",
        ],
        [
            "How do I update the credit card on file? My old {card} expired.",
            "My {card} keeps getting declined at checkout even though it works everywhere else.",
            "We want to pay by bank transfer instead of card from next month on. Is that possible?",
        ],
        [
            "I need a receipt for the {amount} payment I made {when}.",
            "Could you resend the receipt for order {order}? It never reached my inbox.",
        ],
        [
            "Why did my monthly cost go up from {amount} to {amount2}? Nobody told us about a "
            "price change.",
            "Our renewal came in at {amount2} instead of {amount}. What changed in the pricing?",
        ],
        [
            "Please cancel my subscription before the next renewal, I don't want to be charged "
            "again.",
            "How do I stop my subscription from renewing? I only wanted one month of {plan}.",
            "Please turn off auto-renew on our subscription, we're moving to another tool in "
            "{month}.",
        ],
        [
            "The app crashed in the middle of checkout and it looks like I paid twice. Please "
            "refund one of the charges.",
            "Your site froze while I was upgrading to {plan2} and now I have two charges of "
            "{amount}. I want my money back.",
            "Checkout showed an error, so I tried again, and now my {card} was charged {amount} "
            "three times. Refund the extra ones please.",
        ],
        [
            "I deleted my account in {month} but you charged my card again {when}. Please refund "
            "it.",
            "We closed our workspace weeks ago, why are we still being billed {amount} a month?",
        ],
        [
            "We're a registered charity, can you remove sales tax from our bill?",
            "The tax on invoice {order} looks wrong, we are VAT exempt in Germany.",
        ],
    ],
    "technical": [
        [
            "The app crashes every time I open the {feature} on my {device} ({os}).",
            "Since updating to {version}, the app crashes on launch on my {device}.",
            "The desktop app crashes as soon as I drag a file into the {feature}.",
        ],
        [
            "I keep getting a {code} error when I try to load the {feature}.",
            "The {feature} shows 'Something went wrong' with error {code} since {when}.",
            "Every request to your API returns {code} for us since {when}. Is there an outage?",
        ],
        [
            "The {feature} has been extremely slow since {when}, pages take 30 seconds to load.",
            "Everything lags badly in {browser}, typing in a comment takes seconds to show up.",
            "Search is so slow it times out for any query longer than two words.",
        ],
        [
            "{integration} sync stopped working after the {version} update, nothing new shows up.",
            "Our {integration} integration posts every update twice.",
            "The {integration} integration disconnects itself every few hours and we have to "
            "reconnect it.",
        ],
        [
            "File upload fails at 99% for anything larger than {size} in {browser}.",
            "Uploading attachments in {browser} just spins forever, smaller files included.",
        ],
        [
            "Our webhook endpoint hasn't received any events since {when}, even though nothing "
            "changed on our side.",
            "The SDK throws a timeout on every call from our server since {when}.",
            "Your API docs say the endpoint supports pagination, but the cursor always returns "
            "the first page.",
        ],
        [
            "CSV export produces an empty file even though the report shows 300 rows.",
            "Exporting the {feature} to PDF cuts off the last column.",
        ],
        [
            "After I sign in I just get a blank page in {browser}. Clearing the cache didn't help.",
            "The {feature} is a blank screen on my {device}, other pages work fine.",
        ],
        [
            "The desktop installer fails on {os} with 'package is damaged'.",
            "I can't install version {version} on {os}, the installer quits halfway through.",
        ],
        [
            "Push notifications stopped arriving on my {device} after the last update.",
            "Email notifications arrive hours late, sometimes the next day.",
        ],
        [
            "The login page doesn't load at all, it just spins forever in {browser}.",
            "Your sign-in page won't load on our office network, but it works on my phone's "
            "hotspot.",
        ],
        [
            "Found a bug: dragging a task to another column duplicates it.",
            "Dates in the {feature} are shifted by one day for everyone in Australia. Looks like "
            "a timezone bug.",
            "The {feature} freezes whenever I filter by more than three tags.",
        ],
        [
            "Reports time out when I pick a date range longer than a month.",
            "The {feature} won't open on {os}, it hangs on the loading spinner.",
        ],
    ],
    "account": [
        [
            "I never receive the password reset email. I checked spam already.",
            "The reset password link says it has expired the moment I click it.",
            "I forgot my password and the reset form says my address isn't registered.",
        ],
        [
            "My account is locked after too many login attempts, how do I get back in?",
            "I got locked out after mistyping my password a few times. Can you unlock me?",
        ],
        [
            "I lost my phone and can't get the two-factor code. Please help me regain access.",
            "I switched phones and my authenticator app no longer has the code for your site.",
            "How do I turn off 2FA? I keep getting stuck at the code screen on my new {device}.",
        ],
        [
            "I need to change the email on my account to {email}.",
            "Please update my login email to {email}, I'm leaving my old company.",
        ],
        [
            "Can I change my username? It still shows my old last name.",
            "How do I change my username without losing my projects?",
        ],
        [
            "Please delete my account and all the data attached to it.",
            "I want to close my account. What happens to the files I uploaded?",
        ],
        [
            "How do I invite a teammate to our workspace? The invite button is greyed out for me.",
            "{name} never got the invitation I sent {when}. Can you resend it?",
            "I need to remove a team member who left the company, {name}.",
        ],
        [
            "Can the owner role be transferred to me? {name} left and nobody has admin "
            "permissions now.",
            "{name} should only have read permissions on our projects, how do I change her role?",
        ],
        [
            "The verification code never arrives by SMS, so I can't finish signing up.",
            "I'm not getting the verification code to verify my email address.",
        ],
        [
            "My account got locked after a payment failed. I've updated my card, how do I get "
            "back in?",
            "After our card was declined the whole account was suspended and now I can't log in. "
            "I need access back today.",
        ],
        [
            "How do I update my profile picture and display name?",
            "My profile still shows my old job title and I can't find where to edit it.",
        ],
        [
            "I accidentally created a second account with another email. Can you merge it into my "
            "main account?",
            "I have two accounts, one personal and one from work. Can I link them into one login?",
        ],
        [
            "After our company switched to single sign-on I can't sign in to my account anymore.",
            "I can't access my account since my company changed its email domain.",
        ],
    ],
}

OPENERS = [
    "",
    "",
    "",
    "Hi,",
    "Hello,",
    "Hey team,",
    "Good morning,",
    "Hi there,",
    "Hello support,",
    "Quick question:",
]
CLOSERS = [
    "",
    "",
    "",
    "Thanks!",
    "Thanks in advance.",
    "Please help.",
    "Can someone look into this today?",
    "This is really frustrating.",
    "Appreciate it.",
    "Cheers, {name}",
    "Best regards",
]
DETAILS: dict[str, list[str]] = {
    "billing": [
        "",
        "",
        "Order number is {order}.",
        "Our customer ID is {customer}.",
        "Our finance team is asking.",
    ],
    "technical": [
        "",
        "",
        "I'm on version {version}.",
        "Happens on {device} and in {browser}.",
        "I already tried restarting.",
        "Screenshot attached.",
    ],
    "account": ["", "", "My workspace is acme-design.", "This is for my personal workspace."],
}


def fill(template: str, rng: random.Random) -> str:
    """Replace each ``{slot}`` with a random value of that slot."""
    return re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), template)


def ticket(label: str, rng: random.Random) -> str:
    """One ticket of ``label``: greeting, a scenario phrasing, detail, sign-off (some empty).

    A greeting and a sign-off such as "Best regards" go on lines of their own, as in an email.
    """
    body = fill(rng.choice(rng.choice(SCENARIOS[label])), rng)
    detail = fill(rng.choice(DETAILS[label]), rng)
    opener, closer = rng.choice(OPENERS), fill(rng.choice(CLOSERS), rng)
    text = f"{body} {detail}".strip()
    if closer:
        signoff = closer.startswith(("Cheers", "Best"))
        text = f"{text}\n{closer}" if signoff else f"{text} {closer}"
    return f"{opener}\n{text}" if opener else text


def generate(count: int, rng: random.Random, seen: set[str]) -> list[tuple[str, str]]:
    """``count`` new (ticket, label) pairs whose normalised text is not in ``seen``."""
    weights = {"billing": 0.36, "technical": 0.36, "account": 0.28}
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        label = rng.choices(list(weights), weights=list(weights.values()))[0]
        text = ticket(label, rng)
        key = normalise(text)
        if key in seen:
            continue
        seen.add(key)
        pairs.append((text, label))
    return pairs


def write(path: Path, prompt: str, pairs: list[tuple[str, str]]) -> None:
    """Write ``pairs`` as chat fine-tuning JSONL with ``prompt`` as the system message."""
    with path.open("w", encoding="utf-8") as out:
        for text, label in pairs:
            messages = [
                {"role": "system", "content": prompt},
                {"role": "user", "content": text},
                {"role": "assistant", "content": label},
            ]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")


def main() -> None:
    """Write both files and print the classifier's agreement with the gold labels."""
    route = load_config(ROOT / "config" / "gateway.yaml").routes["support-triage"]
    prompt = route.variants[route.candidate].system_prompt
    assert prompt is not None, "the candidate variant needs a system prompt"
    rng = random.Random(SEED)  # noqa: S311 - reproducible sample data, not cryptography
    seen: set[str] = set()
    files = {
        "support_train.jsonl": generate(TRAIN, rng, seen),
        "support_heldout.jsonl": generate(HELDOUT, rng, seen),
    }
    for name, pairs in files.items():
        write(OUT / name, prompt, pairs)
        wrong = [(text, gold) for text, gold in pairs if classify(text) != gold]
        share = 100 * (1 - len(wrong) / len(pairs))
        print(f"{name}: {len(pairs)} examples, classifier agrees on {share:.1f}%")
        for text, gold in wrong:
            print(f"  gold {gold}, classifier {classify(text)}: {text}")


if __name__ == "__main__":
    main()
