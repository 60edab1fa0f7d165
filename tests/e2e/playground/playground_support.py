"""Constants shared by the playground browser test and its fixtures."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep a headless Chromium quiet and self-contained on a CI machine with no
# display, no GPU and no outside network. Playwright adds a fresh temporary profile.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: name -> (rank, target modules, leaderboard entry or None)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ADAPTERS: dict[str, tuple[int, list[str], tuple[str, str, float, float] | None]] = {
    "sentiment": (8, ["q_proj", "v_proj"], ("sentiment", "accuracy", 0.412, 0.884)),
    "arithmetic": (4, ATTENTION, ("arithmetic", "last_number", 0.06, 0.53)),
    "plain": (16, ["gate_proj", "up_proj", "down_proj"], None),
    # Not given to the server at start: the test adds it through the admin API.
    "topic": (8, ["q_proj", "v_proj", "up_proj"], ("topic", "rouge_l", 0.217, 0.645)),
}
ADDED_LATER = "topic"
