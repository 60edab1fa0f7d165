"""``loraland models ...``: resolve URIs and inspect the model cache."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from loraland.storage import builtin, resolve

models_app = typer.Typer(
    help="Resolve model URIs and inspect the local cache.", no_args_is_help=True
)
console = Console()


def _dir_size(path: object) -> int:
    from pathlib import Path

    root = Path(str(path))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@models_app.command("resolve")
def resolve_command(
    ctx: typer.Context,
    uri: str = typer.Argument(
        ..., help="builtin://NAME, a path, file://, pvc://, hf:// or s3:// URI"
    ),
) -> None:
    """Fetch or convert URI if needed; print its local directory as the last line."""
    settings = ctx.obj.settings
    with console.status(f"resolving {uri}") as status:
        path = resolve(uri, settings, progress=lambda step: status.update(f"{uri}: {step}"))
    typer.echo(str(path))


@models_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Show the builtin models and what the cache holds."""
    settings = ctx.obj.settings
    table = Table(title="builtin models")
    for column in ("uri", "description", "cached at", "size"):
        table.add_column(column)
    for model in builtin.BUILTIN_MODELS.values():
        path = builtin.converted_dir(model, settings.models_dir)
        cached = builtin.is_converted(path)
        table.add_row(
            model.uri,
            model.description,
            str(path) if cached else "not converted yet",
            f"{_dir_size(path) / 2**20:.0f} MiB" if cached else "-",
        )
    console.print(table)
    console.print(f"cache: {settings.cache_dir}")
    for sub in ("hf", "s3"):
        root = settings.cache_dir / sub
        if root.is_dir():
            console.print(f"  {sub}: {_dir_size(root) / 2**20:.0f} MiB in {root}")
