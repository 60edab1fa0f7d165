"""``loraland loadtest sweep | compare | report | k8s``.

The suite's own flags (API, adapter mix, prompt and output lengths) are the same as the
locustfile's, validated here once before any Locust process starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from loraland.loadtest.options import LoadOptions

loadtest_app = typer.Typer(
    help="Load tests: time to first token, total request time, tokens/s under concurrent users.",
    no_args_is_help=True,
)

ApiOpt = Annotated[str, typer.Option("--api", help="tgi (/generate_stream), openai or grpc.")]
AdaptersOpt = Annotated[
    str, typer.Option("--adapters", help="Adapter ids, comma separated; 'ad-{0..99}' expands.")
]
DistOpt = Annotated[str, typer.Option("--adapter-dist", help="uniform | zipf | none.")]
ZipfOpt = Annotated[float, typer.Option("--zipf-s", help="Zipf exponent (weight 1/k^s).")]
PromptFileOpt = Annotated[
    Path | None, typer.Option("--prompt-file", help="Prompts: .txt, .jsonl or .json.")
]
WordsOpt = Annotated[str, typer.Option("--prompt-words", help="Words per generated prompt.")]
TokensOpt = Annotated[str, typer.Option("--max-new-tokens", help="N or LOW-HIGH per request.")]
IgnoreEosOpt = Annotated[
    bool, typer.Option("--ignore-eos", help="Generate past end-of-sequence (fixed lengths).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for prompts and adapters (-1: random).")]
TimeoutOpt = Annotated[float, typer.Option("--request-timeout", help="Seconds per request.")]
BackoffOpt = Annotated[
    float, typer.Option("--overload-backoff", help="Pause after a 429 or a failure (s).")
]
BaseNameOpt = Annotated[
    str, typer.Option("--openai-base-model", help="OpenAI model name of the base model.")
]


def _options(
    api: str,
    adapters: str,
    adapter_dist: str,
    zipf_s: float,
    prompt_file: Path | None,
    prompt_words: str,
    max_new_tokens: str,
    ignore_eos: bool,
    seed: int,
    request_timeout: float,
    overload_backoff: float,
    openai_base_model: str,
) -> LoadOptions:
    from loraland.loadtest.errors import LoadTestError
    from loraland.loadtest.options import LoadOptions
    from loraland.loadtest.prompts import load_prompt_file

    if prompt_file is not None:
        load_prompt_file(prompt_file)  # a bad file fails here, not in every user
    options = LoadOptions.from_flags(
        api=api,
        adapters=adapters,
        adapter_dist=adapter_dist,
        zipf_s=zipf_s,
        prompt_file=str(prompt_file.resolve()) if prompt_file else "",
        prompt_words=prompt_words,
        max_new_tokens=max_new_tokens,
        ignore_eos=ignore_eos,
        seed=seed,
        request_timeout_s=request_timeout,
        overload_backoff_s=overload_backoff,
        openai_base_model=openai_base_model,
    )
    if options.api == "grpc" and options.openai_base_model:
        raise LoadTestError("--openai-base-model only applies to --api openai")
    return options


@loadtest_app.command("sweep")
def sweep(
    host: Annotated[str, typer.Option("--host", help="Server URL (grpc: HOST:PORT).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for CSVs, summary and plots.")],
    users: Annotated[str, typer.Option("--users", help="User counts.")] = "1,2,4,8,16,32",
    duration: Annotated[str, typer.Option("--duration", help="Per level: 30s, 2m...")] = "30s",
    spawn_rate: Annotated[
        float | None, typer.Option("--spawn-rate", help="Users started per second.")
    ] = None,
    locustfile: Annotated[
        Path | None, typer.Option("--locustfile", help="Another locustfile using our users.")
    ] = None,
    locust_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--locust-arg", help="One extra Locust argument, e.g. --locust-arg=--processes=4."
        ),
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the reachability check of --host.")
    ] = False,
    print_summary: Annotated[
        bool,
        typer.Option("--print-summary", help="Print summary.json at the end (for logs)."),
    ] = False,
    api: ApiOpt = "tgi",
    adapters: AdaptersOpt = "",
    adapter_dist: DistOpt = "uniform",
    zipf_s: ZipfOpt = 1.0,
    prompt_file: PromptFileOpt = None,
    prompt_words: WordsOpt = "90-110",
    max_new_tokens: TokensOpt = "90-110",
    ignore_eos: IgnoreEosOpt = False,
    seed: SeedOpt = -1,
    request_timeout: TimeoutOpt = 300.0,
    overload_backoff: BackoffOpt = 0.5,
    openai_base_model: BaseNameOpt = "",
) -> None:
    """Run Locust headless at each user count; write CSVs, summary.md and plots."""
    from loraland.loadtest.sweep import (
        BUNDLED_LOCUSTFILE,
        SUMMARY_MARKER,
        SweepConfig,
        check_reachable,
        parse_duration,
        parse_users,
        run_sweep,
    )

    options = _options(
        api,
        adapters,
        adapter_dist,
        zipf_s,
        prompt_file,
        prompt_words,
        max_new_tokens,
        ignore_eos,
        seed,
        request_timeout,
        overload_backoff,
        openai_base_model,
    )
    config = SweepConfig(
        host=host,
        users=parse_users(users),
        duration_s=parse_duration(duration),
        out=out,
        options=options,
        spawn_rate=spawn_rate,
        locustfile=locustfile.resolve() if locustfile else BUNDLED_LOCUSTFILE,
        extra_args=tuple(locust_arg or ()),
    )
    if not no_check:
        check_reachable(host, options.api)
    report = run_sweep(config, echo=typer.echo)
    typer.echo(f"summary: {out / 'summary.md'}")
    if print_summary:
        typer.echo(SUMMARY_MARKER)
        typer.echo(report.model_dump_json(indent=2))


@loadtest_app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="A sweep folder (users-NNN/ inside).")],
) -> None:
    """Rebuild summary.md, summary.json and plots from a sweep folder's Locust files."""
    from loraland.loadtest.errors import LoadTestError
    from loraland.loadtest.options import LoadOptions
    from loraland.loadtest.report import RUN_SUFFIX, read_run_record
    from loraland.loadtest.sweep import CSV_STEM, collect_levels, write_report

    if not directory.is_dir():
        raise LoadTestError(f"{directory} is not a folder")
    levels = collect_levels(directory)
    if not levels:
        raise LoadTestError(f"{directory} holds no users-NNN/ level folders")
    first = next(p for p in sorted(directory.glob("users-*")) if p.is_dir())
    record = read_run_record(first / f"{CSV_STEM}{RUN_SUFFIX}")
    options = LoadOptions.model_validate(record.options) if record.options else LoadOptions()
    duration = max(round(lvl.duration_s) for lvl in levels)
    write_report(directory, record.host, duration, options, levels)
    typer.echo(f"summary: {directory / 'summary.md'}")


@loadtest_app.command("compare")
def compare(
    first: Annotated[Path, typer.Argument(help="Sweep folder A.")],
    second: Annotated[Path, typer.Argument(help="Sweep folder B.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for compare.md and plots.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Names of A and B (give twice).")
    ] = None,
) -> None:
    """Two sweeps side by side: a markdown table per user count, and overlaid plots."""
    from loraland.loadtest.compare import compare_markdown
    from loraland.loadtest.errors import LoadTestError
    from loraland.loadtest.plots import plot_compare
    from loraland.loadtest.report import load_report

    labels = list(label or [])
    if labels and len(labels) != 2:
        raise LoadTestError(f"--label: give it twice (A then B), got {len(labels)}")
    label_a, label_b = labels or [first.resolve().name, second.resolve().name]
    a = (label_a, load_report(first))
    b = (label_b, load_report(second))
    text = compare_markdown(a, b)
    target = out if out is not None else Path(f"compare-{label_a}-vs-{label_b}")
    plots = plot_compare(a, b, target / "plots")
    lines = [text, "## Plots", ""]
    lines += [f"![{p.stem}]({p.relative_to(target).as_posix()})" for p in plots]
    (target / "compare.md").write_text("\n".join(lines) + "\n")
    typer.echo(text)
    typer.echo(f"written: {target / 'compare.md'} and {len(plots)} plots")


@loadtest_app.command("k8s")
def k8s(
    host: Annotated[
        str, typer.Option("--host", help="Target, e.g. an AdapterDeployment's status.endpoint.")
    ],
    name: Annotated[str, typer.Option("--name", help="Prefix of the objects.")] = "loadtest",
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    users: Annotated[int, typer.Option("--users", help="Concurrent users in all.")] = 16,
    spawn_rate: Annotated[float | None, typer.Option("--spawn-rate")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker pods.")] = 2,
    run_time: Annotated[str | None, typer.Option("--run-time", help="e.g. 10m.")] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="An image with loraland installed.")
    ] = None,
    worker_cpu: Annotated[str, typer.Option("--worker-cpu", help="CPU per worker pod.")] = "1",
    worker_memory: Annotated[
        str, typer.Option("--worker-memory", help="Memory per worker pod.")
    ] = "1Gi",
    headless: Annotated[
        bool,
        typer.Option(
            "--headless",
            help="Master and workers as Jobs; the report is printed in the master's log.",
        ),
    ] = False,
    node_selector: Annotated[
        list[str] | None,
        typer.Option("--node-selector", help="KEY=VALUE for every pod (repeatable)."),
    ] = None,
    toleration: Annotated[
        list[str] | None,
        typer.Option("--toleration", help="KEY[=VALUE][:EFFECT] for every pod (repeatable)."),
    ] = None,
    api: ApiOpt = "tgi",
    adapters: AdaptersOpt = "",
    adapter_dist: DistOpt = "uniform",
    zipf_s: ZipfOpt = 1.0,
    prompt_words: WordsOpt = "90-110",
    max_new_tokens: TokensOpt = "90-110",
    ignore_eos: IgnoreEosOpt = False,
    seed: SeedOpt = -1,
    request_timeout: TimeoutOpt = 300.0,
    overload_backoff: BackoffOpt = 0.5,
    openai_base_model: BaseNameOpt = "",
) -> None:
    """Print manifests of a distributed Locust (master + workers) for `kubectl apply -f -`."""
    from pydantic import ValidationError

    from loraland.loadtest.errors import LoadTestError
    from loraland.loadtest.k8s import (
        DEFAULT_IMAGE,
        LocustCluster,
        Toleration,
        build_manifests,
        to_yaml,
    )

    options = _options(
        api,
        adapters,
        adapter_dist,
        zipf_s,
        None,
        prompt_words,
        max_new_tokens,
        ignore_eos,
        seed,
        request_timeout,
        overload_backoff,
        openai_base_model,
    )
    try:
        spec = LocustCluster(
            name=name,
            namespace=namespace,
            host=host,
            users=users,
            spawn_rate=spawn_rate,
            workers=workers,
            run_time=run_time,
            image=image or DEFAULT_IMAGE,
            options=options,
            worker_cpu=worker_cpu,
            worker_memory=worker_memory,
            headless=headless,
            node_selector=_key_values(node_selector or [], "--node-selector"),
            tolerations=tuple(Toleration.parse(t) for t in toleration or []),
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not field:  # a check across fields names its field first
            field, _, message = message.partition(": ")
        raise LoadTestError(f"--{field.replace('_', '-')}: {message}") from None
    typer.echo(to_yaml(build_manifests(spec)), nl=False)


def _key_values(pairs: list[str], flag: str) -> dict[str, str]:
    from loraland.loadtest.errors import LoadTestError

    result = {}
    for pair in pairs:
        key, found, value = pair.partition("=")
        if not found or not key:
            raise LoadTestError(f"{flag}: expected KEY=VALUE, got {pair!r}")
        result[key] = value
    return result
