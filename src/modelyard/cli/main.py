"""The `modelyard` command: a click group of subcommands, each a thin layer over the SDK's `Client`.

Errors Modelyard raises on purpose (`ModelyardError`) and bad option values print `Error: <message>` on
stderr and exit with status 1, without a traceback; anything unexpected keeps its traceback.
"""

from __future__ import annotations

import warnings
from typing import Any, NoReturn

import click

from modelyard import __version__
from modelyard.cli.access import audit, permissions, tokens, users
from modelyard.cli.artifacts import artifacts
from modelyard.cli.common import State, err, pass_state
from modelyard.cli.db import db
from modelyard.cli.deployments import deployments
from modelyard.cli.experiments import experiments
from modelyard.cli.gc import gc
from modelyard.cli.models import models
from modelyard.cli.pipelines import pipelines
from modelyard.cli.rollout import rollout
from modelyard.cli.runs import runs
from modelyard.cli.serve import serve
from modelyard.cli.server import server
from modelyard.cli.webhooks import webhooks
from modelyard.errors import ModelyardError


def fail(ctx: click.Context, message: str, hint: str | None = None) -> NoReturn:
    """Print `Error: message` in red on stderr (and a dim hint), then exit with status 1."""
    from rich.text import Text

    console = err()
    console.print(Text("Error: ", style="bold red") + Text(message, style="red"))
    if hint:
        console.print(Text(hint, style="dim"))
    ctx.exit(1)


def show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, *args: Any, **kwargs: Any
) -> None:
    """Modelyard's own warnings as one yellow line, `Warning: <message>`, not Python's file:line form."""
    if not category.__module__.startswith("modelyard"):
        return _python_show_warning(message, category, filename, lineno, *args, **kwargs)
    from rich.text import Text

    err().print(Text("Warning: ", style="bold yellow") + Text(str(message), style="yellow"))


_python_show_warning = warnings.showwarning


class ModelyardGroup(click.Group):
    """The root group: turns expected errors into one red line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelyardError as exc:
            fail(ctx, exc.message)
        except click.BadParameter as exc:
            path = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(ctx, exc.format_message(), hint=f"See: {path} --help")


@click.group(cls=ModelyardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="modelyard", message="%(prog)s %(version)s")
@click.option(
    "--tracking-uri",
    envvar="MODELYARD_TRACKING_URI",
    metavar="URI",
    help="Tracking store: sqlite:///path or postgresql+psycopg://user@host/db "
    "[env: MODELYARD_TRACKING_URI; default: the local store in MODELYARD_HOME (~/.modelyard)].",
)
@click.pass_context
def cli(ctx: click.Context, tracking_uri: str | None) -> None:
    """Modelyard: track experiments, compare runs and keep their artifacts.

    Start with the quickstart, which trains a few small models and tracks every run:

    \b
      modelyard quickstart
      modelyard runs list --experiment quickstart
      modelyard runs search --filter "metrics.accuracy > 0.9" --order-by "metrics.accuracy DESC"

    Every command has --help with an example.
    """
    warnings.showwarning = show_warning
    state = ctx.ensure_object(State)
    state.tracking_uri = tracking_uri or None
    ctx.call_on_close(state.close)


@cli.command("quickstart")
@click.option(
    "--experiment", "-e", default="quickstart", show_default=True, help="Experiment to put the runs in."
)
@click.option("--no-plot", is_flag=True, help="Skip the confusion-matrix figures (a little faster).")
@click.option("--no-serve", is_flag=True, help="Do not serve the released model and send it traffic.")
@pass_state
def quickstart(state: State, experiment: str, no_plot: bool, no_serve: bool) -> None:
    """Run a small training pipeline: validate data, train 4 models in parallel, release the best.

    Takes a few seconds, on scikit-learn's bundled digits dataset (no download). The steps load, validate and
    split the data, train four settings in parallel (each run logs its parameters, datasets, per-epoch
    train_loss and val_accuracy, accuracy and f1, a confusion matrix and the model), pick the best, register
    it and promote it to Production through the release gates. Then `modelyard serve` serves the released
    model and the quickstart sends it a few hundred requests. Run it twice: the second run is cached.

    \b
    Example:
      modelyard quickstart
      modelyard quickstart --experiment my-first-experiment --no-plot
      modelyard pipelines list
    """
    from modelyard.cli import quickstart as qs

    qs.run(experiment=experiment, plot=not no_plot, tracking_uri=state.tracking_uri, serve=not no_serve)


for command in (
    experiments,
    runs,
    artifacts,
    models,
    pipelines,
    serve,
    rollout,
    deployments,
    db,
    gc,
    server,
    users,
    tokens,
    permissions,
    audit,
    webhooks,
):
    cli.add_command(command)
