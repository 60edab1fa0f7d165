"""The Locust side: a closed-loop LLM user, our flags, and a record of each run.

This is the only module that imports Locust (which monkey-patches the standard library
through gevent on import), so it is imported by locustfiles and never by the rest of the
package. Importing it registers three listeners on Locust's global events:

- ``init_command_line_parser``: the suite's flags (:mod:`loraland.loadtest.options`);
- ``init``: validates those flags up front (a wrong flag stops Locust with one line, not
  a traceback per user), lets grpcio cooperate with gevent, and brings gevent's clock up
  to date so ``--run-time`` counts from now;
- ``test_start``/``test_stop`` (master or single process): writes ``<csv prefix>_run.json``
  with the measured wall-clock span of the run, which the sweep report divides by, and
  rewrites ``<csv prefix>_stats.csv`` and ``_failures.csv`` with the final numbers.
  Locust itself refreshes those files once a second and does not write them again at
  exit, so without this the last second of a run is missing from them (20% of a 5 s
  level); the HTML report and the printed summary are complete either way.

:class:`LLMUser` picks an adapter and a prompt, streams one answer, and fires one request
event per measurement (see :mod:`loraland.loadtest.metrics`). ``wait_time`` is zero: each
user waits for its answer, then asks again, so N users are N requests in flight.
"""

from __future__ import annotations

import csv
import functools
import itertools
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loraland.loadtest.adapters_mix import AdapterMix
from loraland.loadtest.clients import (
    GenerationRequest,
    OpenAIClient,
    Overloaded,
    RequestFailed,
    StreamClient,
    TGIClient,
)
from loraland.loadtest.errors import LoadTestError
from loraland.loadtest.metrics import (
    FAILED_REQUEST,
    OVERLOADED_NAME,
    OVERLOADED_TYPE,
    metric_events,
    request_metrics,
)
from loraland.loadtest.options import LoadOptions, add_arguments
from loraland.loadtest.prompts import PromptSource, load_prompt_file
from loraland.loadtest.report import RunRecord

log = logging.getLogger("loraland.loadtest")

#: Locust request types, one per protocol: the rows of Locust's tables read "TGI
#: time_to_first_token", "OPENAI total_request_time", ...
REQUEST_TYPES = {"tgi": "TGI", "openai": "OPENAI", "grpc": "GRPC"}


def _add_arguments(parser: Any, **_: Any) -> None:
    add_arguments(parser)


def _on_init(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is not None:
        try:
            options = LoadOptions.from_namespace(environment.parsed_options)
            if options.prompt_file:
                prompts_from(options.prompt_file)
        except LoadTestError as exc:
            log.error("%s", exc)
            sys.exit(2)
    # grpcio runs its own threads; this makes them gevent-friendly. It must happen before
    # any channel exists, and is harmless when no user speaks gRPC.
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()
    if not isinstance(environment.runner, WorkerRunner):
        recorder = RunRecorder(environment)
        environment.events.test_start.add_listener(recorder.started)  # type: ignore[no-untyped-call]
        environment.events.test_stop.add_listener(recorder.stopped)  # type: ignore[no-untyped-call]
    # Locust starts its --run-time timer right after this event, before gevent's loop
    # has run since it was created during the imports. libev measures a new timer from
    # the loop's cached clock, which is as old as that first loop pass: on a busy machine
    # where importing took 10 s, a 10 s run ended after 0.3 s with no request done.
    gevent.get_hub().loop.update_now()


# Locust's event hooks are untyped; registered here, once, when a locustfile imports us.
events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]
events.init.add_listener(_on_init)  # type: ignore[no-untyped-call]


class RunRecorder:
    """Measures the run's wall-clock span and writes it beside Locust's CSV files."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._started: tuple[float, float] | None = None  # (epoch, monotonic)

    def started(self, **_: Any) -> None:
        self._started = (time.time(), time.monotonic())

    def stopped(self, **_: Any) -> None:
        parsed = self._environment.parsed_options
        prefix = getattr(parsed, "csv_prefix", None)
        if self._started is None or not prefix:
            return
        epoch, mono = self._started
        try:
            options = LoadOptions.from_namespace(parsed).model_dump(mode="json")
        except LoadTestError:
            options = {}
        record = RunRecord(
            host=self._environment.host or "",
            users=int(getattr(parsed, "num_users", 0) or 0),
            spawn_rate=float(getattr(parsed, "spawn_rate", 0) or 0),
            started_at=epoch,
            duration_s=time.monotonic() - mono,
            options=options,
        )
        write_final_csv(self._environment, str(prefix))
        Path(f"{prefix}_run.json").write_text(record.model_dump_json(indent=2) + "\n")
        self._started = None


def write_final_csv(environment: Environment, prefix: str) -> None:
    """Replace the stats and failures CSVs with the final numbers (atomically: Locust's
    periodic writer still holds the old files open and keeps writing to those)."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
    ):
        target = f"{prefix}{suffix}"
        temporary = f"{target}.tmp"
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            write(csv.writer(handle))
        os.replace(temporary, target)


@functools.lru_cache(maxsize=8)
def prompts_from(path: str) -> tuple[str, ...]:
    """A prompt file, read once per process however many users share it."""
    return tuple(load_prompt_file(Path(path)))


def make_client(options: LoadOptions, host: str) -> StreamClient:
    if options.api == "tgi":
        return TGIClient(host, options.request_timeout_s)
    if options.api == "openai":
        return OpenAIClient(host, options.request_timeout_s, options.openai_base_model)
    from loraland.loadtest.grpc_client import GrpcClient

    return GrpcClient(host, options.request_timeout_s)


class LLMUser(User):
    """One person at a keyboard: ask, read the whole streamed answer, ask again."""

    wait_time = constant(0)
    _numbers = itertools.count()

    def on_start(self) -> None:
        if not self.host:
            raise LoadTestError("give the server with --host (e.g. http://localhost:8080)")
        options = LoadOptions.from_namespace(self.environment.parsed_options)
        # Each user draws from its own generator: seeded runs repeat user by user.
        number = next(self._numbers)
        rng = random.Random(None if options.seed is None else options.seed * 100_003 + number)
        prompts = prompts_from(options.prompt_file) if options.prompt_file else None
        self.options = options
        self.request_type = REQUEST_TYPES[options.api]
        self.mix = AdapterMix(options.adapters, options.adapter_dist, options.zipf_s, rng)
        self.prompts = PromptSource(rng, options.prompt_words, options.max_new_tokens, prompts)
        self.client = make_client(options, self.host)

    def on_stop(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    @task
    def ask(self) -> None:
        plan = self.prompts.next()
        adapter = self.mix.sample()
        request = GenerationRequest(
            prompt=plan.prompt,
            max_new_tokens=plan.max_new_tokens,
            adapter=adapter,
            ignore_eos=self.options.ignore_eos,
        )
        context = {"adapter": adapter or "", "max_new_tokens": plan.max_new_tokens}
        try:
            timing = self.client.stream(request)
        except Overloaded as exc:
            self._fire(OVERLOADED_TYPE, OVERLOADED_NAME, exc.elapsed_s * 1000, 0, context)
            gevent.sleep(self.options.overload_backoff_s)
            return
        except RequestFailed as exc:
            self._fire(
                self.request_type,
                FAILED_REQUEST,
                exc.elapsed_s * 1000,
                exc.tokens,
                context,
                exception=exc,
            )
            # A dead server answers at once; without a pause every user would spin.
            gevent.sleep(self.options.overload_backoff_s)
            return
        for event in metric_events(request_metrics(timing)):
            self._fire(self.request_type, event.name, event.value, event.length, context)

    def _fire(
        self,
        request_type: str,
        name: str,
        value: float,
        length: int,
        context: dict[str, Any],
        exception: Exception | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=value,
            response_length=length,
            exception=exception,
            context=context,
        )
