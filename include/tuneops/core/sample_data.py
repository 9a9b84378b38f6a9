"""A deterministic generator of realistic support tickets with a structured triage reply.

Each ticket's category, priority and owning team follow from cues in its text, the way a
human triager would read them, so a small model can learn the mapping and a model that did
not learn it visibly fails. Same seed, same records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

PRODUCTS = ["Acme Cloud", "Acme POS", "Acme Mobile", "Acme Analytics", "Acme Mail", "Acme Storage"]
CHANNELS = ["email", "chat", "web", "phone"]
NAMES = ["Dana", "Lee", "Priya", "Marco", "Aiko", "Sam", "Noor", "Jonas", "Elena", "Kwame", "Ines", "Tom"]

CATEGORIES = {
    "billing": {
        "team": "payments",
        "subjects": [
            "Charged twice",
            "Invoice question",
            "Refund request",
            "Wrong amount on my bill",
            "Card declined",
        ],
        "bodies": [
            "I was charged twice for my {product} subscription this month.",
            "My invoice for {product} shows an amount I do not recognise.",
            "I cancelled {product} but I was still billed for the next period.",
            "The payment for {product} failed although my card is valid.",
            "Please refund the extra charge on my {product} account.",
        ],
    },
    "bug": {
        "team": "engineering",
        "subjects": ["App crashes", "Error on save", "Sync is broken", "Page will not load", "Export fails"],
        "bodies": [
            "{product} crashes every time I open the reports screen.",
            "When I press save in {product} I get an error 500.",
            "{product} stopped syncing my data after the last update.",
            "The dashboard in {product} shows a blank page and a spinner forever.",
            "Exporting to CSV from {product} fails with a timeout error.",
        ],
    },
    "account": {
        "team": "identity",
        "subjects": [
            "Cannot log in",
            "Password reset",
            "Two-factor problem",
            "Locked out",
            "Change account email",
        ],
        "bodies": [
            "I cannot log in to {product}; it says my password is wrong.",
            "The password reset email for {product} never arrives.",
            "My two-factor codes for {product} are rejected.",
            "My {product} account got locked after too many attempts.",
            "I need to change the login email on my {product} account.",
        ],
    },
    "shipping": {
        "team": "logistics",
        "subjects": [
            "Where is my order",
            "Package damaged",
            "Wrong item delivered",
            "Delivery delayed",
            "Tracking not updating",
        ],
        "bodies": [
            "My {product} hardware order has not arrived yet.",
            "The {product} terminal arrived with a cracked screen.",
            "I received the wrong {product} device in my package.",
            "The delivery of my {product} order is two weeks late.",
            "The tracking number for my {product} shipment shows no updates.",
        ],
    },
    "feature_request": {
        "team": "product",
        "subjects": [
            "Feature idea",
            "Suggestion",
            "Would love dark mode",
            "Integration request",
            "Missing option",
        ],
        "bodies": [
            "It would be great if {product} had a dark mode.",
            "Could {product} integrate with our calendar tool?",
            "Please add an option in {product} to schedule reports weekly.",
            "We would like {product} to support more than one currency.",
            "A bulk edit feature in {product} would save us hours.",
        ],
    },
}

PRIORITY_CUES = {
    "urgent": [
        "Our whole team is blocked right now.",
        "This is urgent, production is down.",
        "We are losing sales every minute.",
    ],
    "high": [
        "Please fix this today.",
        "This affects many of our users.",
        "We need this resolved as soon as possible.",
    ],
    "normal": ["Could you take a look?", "Thanks for your help.", "Let me know what you find."],
    "low": ["No rush on this one.", "Whenever you have time.", "Just a minor annoyance."],
}
PRIORITY_WEIGHTS = {"urgent": 1, "high": 2, "normal": 4, "low": 2}


def _ticket(rng: random.Random, index: int, seed: int) -> dict:
    category = rng.choice(sorted(CATEGORIES))
    spec = CATEGORIES[category]
    if category == "feature_request":
        priority = rng.choice(["normal", "low"])
    else:
        priority = rng.choices(list(PRIORITY_WEIGHTS), weights=list(PRIORITY_WEIGHTS.values()))[0]
    product = rng.choice(PRODUCTS)
    name = rng.choice(NAMES)
    reference = (
        rng.choice(["Customer number", "Account ID", "Order", "Reference"]) + f" {rng.randint(10000, 99999)}."
    )
    parts = [
        f"Hi, this is {name}.",
        rng.choice(spec["bodies"]).format(product=product),
        reference,
        rng.choice(PRIORITY_CUES[priority]),
    ]
    # Real tickets carry some contact details: about 1 in 100 an email, 1 in 200 a phone number.
    contact = rng.random()
    if contact < 0.01:
        parts.append(f"You can reach me at {name.lower()}.{rng.randint(1, 99)}@example.com.")
    elif contact < 0.015:
        parts.append(f"Call me on +1 415-555-{rng.randint(1000, 9999)}.")
    body = " ".join(parts)
    triage = {"category": category, "priority": priority, "team": spec["team"]}
    return {
        "ticket_id": f"T{seed:04d}-{index:06d}",
        "subject": rng.choice(spec["subjects"]),
        "body": body,
        "channel": rng.choice(CHANNELS),
        "triage": json.dumps(triage, sort_keys=True),
    }


def iter_tickets(n: int, seed: int = 0):
    """Stream ``n`` tickets, deterministic for a given ``seed``; ids are unique per seed."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = random.Random(seed)
    return (_ticket(rng, i, seed) for i in range(n))


def generate_tickets(n: int, seed: int = 0) -> list[dict]:
    """``n`` tickets as a list (see ``iter_tickets``)."""
    return list(iter_tickets(n, seed))


def write_sample_batch(dest: Path, n: int = 2000, seed: int = 0) -> Path:
    """Write ``n`` tickets as JSON Lines to ``dest`` (a file path) and return it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "w") as fh:
        for record in iter_tickets(n, seed):
            fh.write(json.dumps(record) + "\n")
    tmp.replace(dest)
    return dest


def pretraining_corpus(n: int = 4000, seed: int = 10_000) -> list[str]:
    """Ticket texts and their routing metadata as JSON, with no triage, for base-model pretraining.

    The base model learns the domain's words and JSON syntax but never sees the triage task.
    A different seed from the sample batches keeps evaluation tickets out of pretraining.
    """
    texts = [
        f"Subject: {t['subject']}\n{t['body']}\n"
        + json.dumps({"ticket": t["ticket_id"], "channel": t["channel"], "subject": t["subject"]})
        for t in generate_tickets(n, seed)
    ]
    return texts + _handbook(n // 4, seed)


HANDBOOK = [
    "Every ticket has a category, a priority and an owning team.",
    "The {team} team owns {category} tickets.",
    "A ticket with {priority} priority in the {category} category is handled by {team}.",
    "Set the priority to {priority} and the team to {team}.",
    "Possible priority values are urgent, high, normal and low.",
    "Categories include billing, bug, account, shipping and feature_request.",
]


def _handbook(n: int, seed: int) -> list[str]:
    """Prose from a support handbook: the domain's vocabulary, as a general model would know it."""
    rng = random.Random(seed + 1)
    lines = []
    for _ in range(n):
        category = rng.choice(sorted(CATEGORIES))
        line = rng.choice(HANDBOOK).format(
            category=category, team=CATEGORIES[category]["team"], priority=rng.choice(sorted(PRIORITY_CUES))
        )
        lines.append(line)
    return lines


# --- a second task: dialogue summaries --------------------------------------------------------
# Short chats between two people and a one-sentence summary, in the style of public dialogue
# summarization sets (SAMSum): a task the support-ticket data never shows, for checking that
# fine-tuning a real model helps on more than the demo's own task.

EVENTS = [
    "meeting",
    "dinner",
    "call",
    "football match",
    "dentist appointment",
    "study session",
    "movie night",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["9am", "10am", "noon", "2pm", "3pm", "5pm", "7pm", "8pm"]
PLACES = ["the cafe", "the office", "the library", "Maria's place", "the park", "the station", "the gym"]
THINGS = ["charger", "umbrella", "laptop", "bike", "camera", "blue jacket", "car keys", "notes"]
REASONS = ["have to work late", "feel sick", "missed the train", "have a family visit", "am stuck in traffic"]
DELAYS = ["the bus is late", "my boss kept me", "I missed the train", "the roads are blocked", "I overslept"]


def _dialogue(rng: random.Random) -> tuple[str, str]:
    a, b = rng.sample(NAMES, 2)
    kind = rng.randrange(4)
    if kind == 0:
        event, old, new, time, place = (
            rng.choice(EVENTS),
            *rng.sample(DAYS, 2),
            rng.choice(TIMES),
            rng.choice(PLACES),
        )
        reason = rng.choice(REASONS)
        lines = [
            f"{a}: Hi {b}, are we still on for the {event} on {old}?",
            f"{b}: Sorry, I can't make it on {old}, I {reason}.",
            f"{a}: No problem. How about {new}?",
            f"{b}: {new} works. {time} at {place}?",
            f"{a}: Perfect, see you then.",
        ]
        summary = f"{a} and {b} move the {event} from {old} to {new} at {time} at {place}."
    elif kind == 1:
        thing, day = rng.choice(THINGS), rng.choice(DAYS)
        lines = [
            f"{a}: {b}, can I borrow your {thing}?",
            f"{b}: Sure, when do you need it?",
            f"{a}: On {day}, just for the day.",
            f"{b}: Fine, I'll bring it to {rng.choice(PLACES)}.",
        ]
        summary = f"{b} will lend {a} the {thing} on {day}."
    elif kind == 2:
        thing, place = rng.choice(THINGS), rng.choice(PLACES)
        lines = [
            f"{a}: Have you seen my {thing}? I can't find it anywhere.",
            f"{b}: I think you left it at {place} yesterday.",
            f"{a}: Oh no. Can you check when you're there?",
            f"{b}: Yes, I'll look for it and text you.",
        ]
        summary = f"{a} lost the {thing}; {b} will look for it at {place}."
    else:
        event, day, time = rng.choice(EVENTS), rng.choice(DAYS), rng.choice(TIMES)
        lines = [
            f"{a}: I'm going to be late for the {event}, I'm so sorry.",
            f"{b}: What happened?",
            f"{a}: Sorry, {rng.choice(DELAYS)}. I'll be there by {time}.",
            f"{b}: OK, we'll wait for you. It's {day}, remember to bring the tickets.",
        ]
        summary = f"{a} will be late for the {event} and arrive by {time}; {b} will wait."
    return "\n".join(lines), summary


def generate_dialogue_summaries(n: int, seed: int = 0) -> list[dict]:
    """``n`` deterministic ``{"dialogue_id", "dialogue", "summary"}`` records (a SAMSum-like task)."""
    rng = random.Random(seed)
    return [
        {"dialogue_id": f"d-{seed}-{i:05d}", "dialogue": dialogue, "summary": summary}
        for i, (dialogue, summary) in enumerate(_dialogue(rng) for _ in range(n))
    ]
