"""The ``loraland`` command line.

Each area keeps its commands in its own module (``loraland.<area>.commands``) and this
file only assembles them. Heavy imports (torch, transformers) happen inside commands,
so ``loraland --help`` stays fast. Errors print as one line; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer
from rich.console import Console

from loraland import __version__
from loraland.api.finetunejob import SpecError
from loraland.api.study import StudySpecError
from loraland.controller.errors import OperatorError
from loraland.data.errors import DataError
from loraland.loadtest.errors import LoadTestError
from loraland.serving.errors import ServerConfigError
from loraland.settings import Settings
from loraland.storage import StorageError
from loraland.trainer.errors import TrainerError
from loraland.trainer.stopping import Terminated

err_console = Console(stderr=True)


@dataclass
class CLIState:
    settings: Settings
    debug: bool = False


app = typer.Typer(
    name="loraland",
    help="Fine-tune, score and serve many LoRA adapters of one base model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loraland {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = CLIState(settings=Settings.from_env(), debug=debug)


def _register() -> None:
    from loraland.storage.commands import models_app

    app.add_typer(models_app, name="models")

    from loraland.evaluation.commands import eval_command, list_tasks_command
    from loraland.pipeline.commands import finetune_command

    app.command("finetune")(finetune_command)
    app.command("eval")(eval_command)
    app.command("tasks")(list_tasks_command)

    from loraland.serving.commands import serve, serve_help

    app.command("serve", help=serve_help)(serve)

    from loraland.controller.commands import crds_app, operator_app

    app.add_typer(operator_app, name="operator")
    app.add_typer(crds_app, name="crds")

    from loraland.loadtest.commands import loadtest_app

    app.add_typer(loadtest_app, name="loadtest")

    from loraland.agent.commands import agent_command

    app.command("agent")(agent_command)

    from loraland.demo.commands import demo

    app.command("demo")(demo)

    from loraland.study.commands import study_app

    app.add_typer(study_app, name="study")


_register()

#: Exceptions that are the user's to fix: printed as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    ServerConfigError,
    SpecError,
    StudySpecError,
    DataError,
    TrainerError,
    OperatorError,
    LoadTestError,
)


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, Terminated):
            err_console.print(str(exc), highlight=False, soft_wrap=True)
            return exc.exit_code
        if debug:
            err_console.print_exception()
        else:
            kind = "error" if isinstance(exc, USER_ERRORS) else f"error ({type(exc).__name__})"
            err_console.print(f"[red]{kind}:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2 if isinstance(exc, USER_ERRORS) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
