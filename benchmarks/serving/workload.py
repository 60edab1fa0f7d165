"""What the serving benchmarks send: the same base model and prompts on every side."""

from __future__ import annotations

BASE_URI = "builtin://smollm2-135m-instruct"
PROMPTS = [
    "Summarise in one sentence why the sky is blue and why sunsets look red.",
    "Write a haiku about a lighthouse keeper who counts the waves every night.",
    "List three practical tips for keeping a sourdough starter healthy in winter.",
    "Explain what a hash table is to a ten year old, using a library as the example.",
]
