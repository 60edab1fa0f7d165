"""Request bookkeeping (incremental text, stops, EOS) and the adapters-file watcher."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from loraland.serving.engine.request import (
    Detokenizer,
    FinishReason,
    GenerationRequest,
    RequestState,
    find_stop,
)
from loraland.serving.lora.watcher import AdaptersFileWatcher, content_digest, plan_reconcile
from loraland.serving.params import SamplingParams

# A toy byte-level vocabulary: token i is the i-th piece; "\xc3" + "\xa9" make "é".
PIECES = [b"<eos>", b"Hel", b"lo", b" wor", b"ld", b"\xc3", b"\xa9", b"!", b" END"]
EOS = 0


def decode(ids: Sequence[int]) -> str:
    return b"".join(PIECES[i] for i in ids).decode("utf-8", errors="replace")


def state(**params: object) -> RequestState:
    request = GenerationRequest("r", [1], SamplingParams(**params), None, sink=lambda e: None)  # type: ignore[arg-type]
    return RequestState(
        request=request,
        detokenizer=Detokenizer(decode, [1], frozenset({EOS})),
        eos_ids=frozenset({EOS}),
        seed=None,
        queued=0.0,
    )


def test_incremental_text_waits_for_whole_characters() -> None:
    detok = Detokenizer(decode, [], frozenset({EOS}))
    assert [detok.add(i) for i in (1, 2, 5, 6, 7)] == ["Hel", "lo", "", "é", "!"]
    assert detok.text == "Helloé!"
    assert detok.add(EOS) == "" and detok.text == "Helloé!"


def test_finish_reasons() -> None:
    run = state(max_new_tokens=3)
    events = [run.accept(t, -0.1, now=1.0) for t in (2, 3, 4)]
    assert [e.finished for e in events[:2]] == [None, None]
    assert events[2].finished is not None and events[2].finished.reason is FinishReason.LENGTH
    assert events[2].finished.generated_text == "lo world"
    assert events[0].timing is not None and events[1].timing is None

    run = state(max_new_tokens=10)
    event = run.accept(EOS, -0.1, now=1.0)
    assert event.finished is not None and event.finished.reason is FinishReason.EOS
    assert event.token is not None and event.token.special

    run = state(max_new_tokens=10, ignore_eos=True)
    assert run.accept(EOS, -0.1, now=1.0).finished is None

    run = state(max_new_tokens=10, stop=("wor",))
    run.accept(2, -0.1, now=1.0)
    event = run.accept(3, -0.1, now=1.0)
    assert event.finished is not None and event.finished.reason is FinishReason.STOP
    assert event.finished.generated_text == "lo wor"


def test_find_stop_only_looks_at_new_text() -> None:
    assert find_stop("abc", 1, ["b"]) is None  # "b" was already there before
    assert find_stop("abcd", 2, ["bc", "d"]) == 3


def test_plan_reconcile() -> None:
    plan = plan_reconcile({"a": "/a", "b": "/b2", "c": "/c"}, {"a": "/a", "b": "/b", "d": "/d"})
    assert plan.remove == ["b", "d"]
    assert plan.add == {"b": "/b2", "c": "/c"}


def test_watcher_follows_symlink_swaps(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "adapters.yaml").write_text("- {name: a, uri: /a}\n")
    (tmp_path / "data").symlink_to("v1")
    (tmp_path / "adapters.yaml").symlink_to("data/adapters.yaml")
    served: dict[str, str] = {}
    watcher = AdaptersFileWatcher(
        tmp_path / "adapters.yaml",
        current=lambda: dict(served),
        add=lambda name, uri: served.__setitem__(name, uri),
        remove=lambda name: served.pop(name),
    )
    assert watcher.poll() and served == {"a": "/a"}
    assert not watcher.poll()  # unchanged content: nothing to do
    digest = content_digest(tmp_path / "adapters.yaml")
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "adapters.yaml").write_text("- {name: b, uri: /b}\n")
    (tmp_path / "tmp").symlink_to("v2")
    os.replace(tmp_path / "tmp", tmp_path / "data")  # the path's own mtime never changes
    assert content_digest(tmp_path / "adapters.yaml") != digest
    assert watcher.poll() and served == {"b": "/b"}
    (tmp_path / "v2" / "adapters.yaml").write_text("{broken: [")
    assert watcher.poll() and served == {"b": "/b"} and watcher.last_error


def test_watcher_retries_adds_that_could_not_happen_yet(tmp_path: Path) -> None:
    file = tmp_path / "adapters.json"
    file.write_text('[{"name": "a", "uri": "/a"}]')
    served: dict[str, str] = {}
    attempts = []

    def add(name: str, uri: str) -> None:
        attempts.append(name)
        if len(attempts) == 1:
            raise ValueError("still draining")
        served[name] = uri

    watcher = AdaptersFileWatcher(file, current=lambda: dict(served), add=add, remove=served.pop)
    watcher.poll()
    assert served == {}
    watcher.poll()  # same content, but the last reconcile was incomplete
    assert served == {"a": "/a"}
