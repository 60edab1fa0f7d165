"""Synthetic tasks the project generates itself, so every test and demo has data.

Each generator draws one row from a :class:`random.Random`; the same seed gives the same
rows on every machine (``random.Random`` seeded with a string is stable across runs).
They are deliberately of different kinds: two classification tasks (one with an
unusual label set the base model cannot guess), arithmetic word problems, entity
extraction to JSON, and a 1-5 rating for the regression metric.
"""

from __future__ import annotations

import json
import random
from typing import Any

from loraland.data.tasks import TaskDefinition

_PRODUCTS = [
    "battery",
    "blender",
    "hotel room",
    "customer service",
    "delivery",
    "novel",
    "headphones",
    "screen",
    "coffee maker",
    "app",
    "jacket",
    "restaurant",
    "keyboard",
    "mattress",
    "camera",
    "vacuum cleaner",
    "tent",
    "printer",
    "backpack",
    "phone case",
    "lamp",
    "game",
    "course",
]
_POSITIVE = [
    "works perfectly",
    "exceeded my expectations",
    "is absolutely wonderful",
    "made my day",
    "is worth every penny",
    "feels sturdy and well made",
    "is a joy to use",
    "arrived early and works great",
    "is the best purchase I made this year",
    "impressed the whole family",
    "does exactly what it promises",
]
_NEGATIVE = [
    "broke after two days",
    "was a complete waste of money",
    "stopped working immediately",
    "is flimsy and cheap",
    "disappointed me badly",
    "arrived damaged and late",
    "is the worst purchase I made this year",
    "made a terrible noise",
    "never worked properly",
    "fell apart within a week",
    "is not worth the price",
]
_POS_TAIL = [
    "",
    " I would buy it again.",
    " Highly recommended!",
    " Five stars from me.",
    " Love it.",
]
_NEG_TAIL = ["", " I want a refund.", " Avoid it.", " Never again.", " Very annoying."]


def sentiment(rng: random.Random) -> dict[str, Any]:
    positive = rng.random() < 0.5
    product = rng.choice(_PRODUCTS)
    phrase = rng.choice(_POSITIVE if positive else _NEGATIVE)
    tail = rng.choice(_POS_TAIL if positive else _NEG_TAIL)
    opener = rng.choice(["The", "This", "My new", "Our"])
    return {
        "review": f"{opener} {product} {phrase}.{tail}",
        "output": "positive" if positive else "negative",
    }


_INTENTS: dict[str, list[str]] = {
    "card_lost": [
        "I can't find my {card} anywhere",
        "my {card} was stolen {when}",
        "I think I lost my {card} {when}",
        "someone took my wallet with my {card}",
    ],
    "transfer_failed": [
        "my transfer to {person} did not go through",
        "the payment I sent {when} bounced",
        "why did my transfer to {person} fail",
        "money I sent to {person} never arrived",
    ],
    "balance_inquiry": [
        "how much money is in my {account}",
        "what is my {account} balance",
        "show me the balance of my {account}",
        "can you tell me what I have left in my {account}",
    ],
    "pin_reset": [
        "I forgot the PIN of my {card}",
        "how do I change my PIN",
        "I need a new PIN for my {card}",
        "my PIN is blocked after too many tries",
    ],
    "exchange_rate": [
        "what rate do you give for {currency}",
        "how many {currency} do I get for 100 dollars",
        "is the {currency} exchange rate good {when}",
        "convert my money to {currency}",
    ],
    "close_account": [
        "I want to close my {account}",
        "please shut down my {account}",
        "how do I cancel my {account} for good",
        "delete my {account} and all my data",
    ],
}
_SLOTS = {
    "card": ["debit card", "credit card", "card", "visa card", "bank card"],
    "when": ["yesterday", "this morning", "last week", "today", "on Monday"],
    "person": ["my landlord", "my sister", "Alex", "a friend", "my employer"],
    "account": ["savings account", "checking account", "account", "joint account"],
    "currency": ["euros", "yen", "pounds", "pesos", "francs"],
}


def intents(rng: random.Random) -> dict[str, Any]:
    label = rng.choice(sorted(_INTENTS))
    pattern = rng.choice(_INTENTS[label])
    text = pattern.format(**{slot: rng.choice(values) for slot, values in _SLOTS.items()})
    text = (
        rng.choice(["", "hi, ", "hello, ", "please help: "])
        + text
        + rng.choice(["", "?", ".", "!"])
    )
    return {"message": text, "output": label}


_NAMES = ["Tom", "Maria", "Ken", "Aisha", "Lena", "Omar", "Sofia", "Ravi", "Nina", "Paul"]
_ITEMS = ["apples", "stickers", "marbles", "books", "coins", "cookies", "pencils", "cards"]


def arithmetic(rng: random.Random) -> dict[str, Any]:
    name, friend = rng.sample(_NAMES, 2)
    item = rng.choice(_ITEMS)
    a, b = rng.randint(2, 40), rng.randint(2, 30)
    c = rng.randint(1, a + b - 1)
    question = (
        f"{name} has {a} {item}. {name} gets {b} more and then gives {c} to {friend}. "
        f"How many {item} does {name} have now?"
    )
    return {"question": question, "output": f"{a} + {b} - {c} = {a + b - c}"}


_PEOPLE = ["Anna Berg", "John Smith", "Li Wei", "Carlos Diaz", "Emma Stone", "Yuki Tanaka"]
_CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Cairo", "Oslo", "Toronto", "Madrid"]
_ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Wayne Foods"]
_SENTENCES = [
    ("{p} flew from {c1} to {c2} to meet the team at {o}.", ["p"], ["c1", "c2"], ["o"]),
    ("{o} hired {p} to open a new office in {c1}.", ["p"], ["c1"], ["o"]),
    ("{p} and {p2} signed a deal with {o} in {c1}.", ["p", "p2"], ["c1"], ["o"]),
    ("In {c1}, {o} announced that {p} will lead research.", ["p"], ["c1"], ["o"]),
    ("{p} moved to {c1} last spring.", ["p"], ["c1"], []),
    ("{o} and {o2} are merging, according to reports from {c1}.", [], ["c1"], ["o", "o2"]),
]


def entities(rng: random.Random) -> dict[str, Any]:
    pattern, people, cities, orgs = rng.choice(_SENTENCES)
    p, p2 = rng.sample(_PEOPLE, 2)
    c1, c2 = rng.sample(_CITIES, 2)
    o, o2 = rng.sample(_ORGS, 2)
    slots = {"p": p, "p2": p2, "c1": c1, "c2": c2, "o": o, "o2": o2}
    answer = {
        "person": [slots[s] for s in people],
        "location": [slots[s] for s in cities],
        "organization": [slots[s] for s in orgs],
    }
    return {"sentence": pattern.format(**slots), "output": json.dumps(answer)}


_RATING_PHRASES = {
    1: ["is awful", "is a total failure", "is unusable"],
    2: ["is disappointing", "is below average", "has many problems"],
    3: ["is okay", "is average", "is fine, nothing special"],
    4: ["is good", "is quite nice", "works well with small flaws"],
    5: ["is perfect", "is outstanding", "is flawless"],
}


def rating(rng: random.Random) -> dict[str, Any]:
    stars = rng.randint(1, 5)
    opener = rng.choice(["The", "This", "My", "Our"])
    extra = rng.choice(["", " Bought it in May.", " Used it for a month.", " It was a gift."])
    text = f"{opener} {rng.choice(_PRODUCTS)} {rng.choice(_RATING_PHRASES[stars])}.{extra}"
    return {"review": text, "output": str(stars)}


SYNTHETIC_TASKS = [
    TaskDefinition(
        name="sentiment",
        kind="classification",
        description="product reviews -> positive / negative",
        prompt_template="Review: {review}\nIs this review positive or negative?\nAnswer:",
        metric="accuracy",
        fields=("review", "output"),
        labels=("negative", "positive"),
        max_new_tokens=8,
        generate=sentiment,
    ),
    TaskDefinition(
        name="intents",
        kind="classification",
        description="banking support messages -> one of six intent codes",
        prompt_template=(
            "Classify the intent of the customer message.\nMessage: {message}\nIntent:"
        ),
        metric="accuracy",
        fields=("message", "output"),
        labels=tuple(sorted(_INTENTS)),
        max_new_tokens=8,
        generate=intents,
    ),
    TaskDefinition(
        name="arithmetic",
        kind="math",
        description="one-line word problems; the last number of the answer is scored",
        prompt_template="Question: {question}\nAnswer:",
        metric="last_number",
        fields=("question", "output"),
        max_new_tokens=24,
        generate=arithmetic,
    ),
    TaskDefinition(
        name="entities",
        kind="extraction",
        description="sentences -> JSON lists of person, location, organization",
        prompt_template=(
            "Extract the people, locations and organizations as JSON.\nSentence: {sentence}\nJSON:"
        ),
        metric="accuracy",
        fields=("sentence", "output"),
        max_new_tokens=64,
        generate=entities,
    ),
    TaskDefinition(
        name="rating",
        kind="regression",
        description="reviews -> star rating 1-5 (score 1 - |error| / 4)",
        prompt_template="Review: {review}\nRate it from 1 to 5 stars.\nStars:",
        metric="regression",
        fields=("review", "output"),
        value_range=(1.0, 5.0),
        max_new_tokens=6,
        generate=rating,
    ),
]


def synthetic_rows(
    task: TaskDefinition, count: int, seed: int, split: str, exclude: set[str] | None = None
) -> list[dict[str, Any]]:
    """``count`` distinct rows of ``task``; rows whose input is in ``exclude`` are skipped."""
    assert task.generate is not None
    rng = random.Random(f"{task.name}:{split}:{seed}")
    seen = set(exclude or ())
    rows: list[dict[str, Any]] = []
    attempts = 0
    input_field = task.fields[0]
    while len(rows) < count and attempts < count * 50:
        attempts += 1
        row = task.generate(rng)
        key = str(row[input_field])
        if key in seen:
            continue
        seen.add(key)
        rows.append(row)
    return rows
