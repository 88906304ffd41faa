"""Prompts for the text detector tests, built here from templates (no data set from anywhere).

- `reference_prompts`: short customer-support questions about an online shop (one topic set);
  a seed gives the corpus, another the held-back prompts of the same kind.
- `shifted_prompts`: long requests about hobbies (another topic set, other words, two to three
  times the length): the embeddings, the lengths (characters, tokens, words) and the
  out-of-vocabulary share move; the script, non-ASCII share and redactions do not.
- `PLANTED`: prompts unlike either: other languages and scripts, code, gibberish.
- `answers`: chat.completion objects as the scripted upstream's `echo` model answers (the
  prompt back), the reference corpus of the LLM response signals.
"""

from __future__ import annotations

import random
from typing import Any

TOPICS = ("password", "billing", "refund", "shipping", "account", "invoice", "subscription", "delivery", "order")
PRODUCTS = ("headphones", "coffee machine", "running shoes", "desk lamp", "backpack", "phone case", "kettle")
TEMPLATES = (
    "How do I change my {topic} settings?",
    "I have a question about the {topic} for order {number}.",
    "Can you help me with my {topic}?",
    "What is your policy on {topic} for a {product}?",
    "My {topic} does not work, what should I do?",
    "Where can I see the {topic} of my {product}?",
    "Is there a fee for {topic} changes?",
    "I ordered a {product} last week, how long does {topic} take?",
    "Why was my {topic} declined?",
    "Please update the {topic} on my account.",
)
HOBBIES = ("sourdough baking", "alpine hiking", "jazz guitar", "chess openings", "watercolour painting", "birdwatching")
LONG_TEMPLATES = (
    "Could you write me a detailed, step-by-step beginner's guide to {hobby}, including the equipment I would "
    "need, the most common mistakes people make in their first months, and a practice schedule for {weeks} weeks?",
    "I have been getting into {hobby} recently and I would love a thorough explanation of the history behind it, "
    "the famous practitioners worth studying, and some recommended books or videos to follow along with.",
    "Please compare three different approaches to {hobby} for someone with about {weeks} hours a week to spare, "
    "listing the advantages, the drawbacks and the typical costs of each one in a small table.",
)
#: out of distribution for a support bot: other languages and scripts, code, gibberish
PLANTED = (
    "Wie kann ich mein Passwort zurücksetzen, wenn ich keinen Zugriff mehr auf meine E-Mail-Adresse habe?",
    "Почему мой заказ до сих пор не доставлен, хотя прошло уже две недели?",
    "我的订单为什么还没有发货？请尽快告诉我物流信息。",
    "SELECT user_id, SUM(amount) FROM payments WHERE status = 'failed' GROUP BY user_id HAVING COUNT(*) > 3;",
    "def reset(user): return db.session.query(User).filter_by(id=user.id).update({'pw_hash': None})",
    "xqzv plorkt wenbu fazzle grimtok snerq vlubbo",
    "zzkk qwpf mnbv lkjh ytre wqas dfgh",
)
REFUSAL = "I'm sorry, but I cannot help with that request."


def reference_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` support questions (the reference distribution)."""
    rng = random.Random(seed)
    return [
        rng.choice(TEMPLATES).format(
            topic=rng.choice(TOPICS), product=rng.choice(PRODUCTS), number=rng.randint(10_000, 99_999)
        )
        for _ in range(n)
    ]


def shifted_prompts(n: int, seed: int = 1) -> list[str]:
    """`n` long hobby requests (drifted: other topics, other words, longer)."""
    rng = random.Random(seed)
    return [rng.choice(LONG_TEMPLATES).format(hobby=rng.choice(HOBBIES), weeks=rng.randint(2, 12)) for _ in range(n)]


def answer(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat.completion as the scripted upstream's echo model gives it (tokens: words, as it counts them)."""
    words = text.split(" ")
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "echo",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": len(words), "completion_tokens": len(words), "total_tokens": 2 * len(words)},
    }
