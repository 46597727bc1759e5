"""`modelyard runs ...`: list, show, search, delete and restore runs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_metric,
    fmt_time,
    json_option,
    key_value_grid,
    new_table,
    out,
    pass_state,
    print_json,
    run_duration,
    runs_table,
    status_text,
    table_console,
)
from modelyard.cli.runs_views import compare_runs, metric_history

if TYPE_CHECKING:
    from modelyard.schemas import Run, SearchRunsPage
    from modelyard.tracking.client import Client

_METRIC_REF = re.compile(r"\bmetrics?\.(`[^`]*`|\"[^\"]*\"|[\w\-./:]+)", re.IGNORECASE)
_PARAM_REF = re.compile(r"\bparams?\.(`[^`]*`|\"[^\"]*\"|[\w\-./:]+)", re.IGNORECASE)
# Pipeline step runs that came from the cache (empty copies: a row each per rerun) stay out of `runs list`
# without --all; steps that ran keep their rows: the quickstart's training runs are pipeline steps.
NOT_A_CACHED_STEP = (
    "tags.`modelyard.step.id` IS NULL OR tags.`modelyard.step.cache` IS NULL "
    "OR tags.`modelyard.step.cache` != 'hit'"
)
SYSTEM_TAG_PREFIX = "modelyard."

experiment_option = click.option(
    "--experiment",
    "-e",
    "experiments",
    multiple=True,
    metavar="NAME_OR_ID",
    help="Only runs of this experiment; repeat for more (default: every active experiment).",
)


@click.group("runs")
def runs() -> None:
    """Look at, search and delete runs.

    \b
    Example:
      modelyard runs list --experiment quickstart
      modelyard runs search --filter "metrics.accuracy > 0.9" --order-by "metrics.accuracy DESC"
    """


def _view(show_all: bool, only_deleted: bool) -> str:
    if show_all and only_deleted:
        raise click.BadParameter("use either --all or --deleted, not both", param_hint="--all/--deleted")
    return "ALL" if show_all else "DELETED_ONLY" if only_deleted else "ACTIVE_ONLY"


def _search(
    client: Client,
    experiments: Sequence[str],
    view: str,
    max_results: int,
    filter: str | None = None,
    order_by: Sequence[str] = (),
    page_token: str | None = None,
) -> SearchRunsPage:
    scope: list[str] | None = list(experiments) or None
    if scope is None and view != "ACTIVE_ONLY":  # deleted runs also live in deleted experiments
        scope = [e.experiment_id for e in client.search_experiments(view_type="ALL")]
    page = client.search_runs(
        scope,
        filter=filter,
        order_by=list(order_by) or None,
        max_results=max_results,
        page_token=page_token,
        view_type=view,
        output="page",
    )
    assert not isinstance(page, list)  # output="page"
    return page  # type: ignore[return-value]


@runs.command("list")
@experiment_option
@click.option("--max-results", "-n", default=50, show_default=True, help="Show at most this many runs.")
@click.option("--all", "show_all", is_flag=True, help="Include cached pipeline step runs and deleted runs.")
@click.option("--deleted", "only_deleted", is_flag=True, help="Show only deleted runs.")
@json_option
@pass_state
def list_runs(
    state: State,
    experiments: tuple[str, ...],
    max_results: int,
    show_all: bool,
    only_deleted: bool,
    as_json: bool,
) -> None:
    """List the newest runs.

    One row per run: id, name, experiment, status, start time, duration, and the metrics and params that
    differ between the runs listed. Pipeline steps that came from the cache are left out (--all shows
    them). Narrow terminals drop the least useful columns; piped output keeps them all and prints ids
    whole; --json prints everything.

    \b
    Example:
      modelyard runs list --experiment quickstart -n 10
      modelyard runs list --all
    """
    view = _view(show_all, only_deleted)
    page = _search(state.client, experiments, view, max_results, None if show_all else NOT_A_CACHED_STEP)
    if as_json:
        print_json(page.runs)
        return
    if not page.runs:
        err().print(
            "No runs found." if experiments or only_deleted else "No runs yet. Try: modelyard quickstart"
        )
        return
    console, width = table_console()
    console.print(runs_table(page.runs, state.client, width=width))
    if page.next_page_token:
        err().print(f"[{DIM}]Showing the newest {len(page.runs)}; see more with --max-results.[/]")


@runs.command("search")
@experiment_option
@click.option(
    "--filter", "-f", "filter_", metavar="EXPR", help="e.g. \"metrics.acc > 0.9 AND params.model = 'cnn'\"."
)
@click.option(
    "--order-by",
    "-o",
    multiple=True,
    metavar="KEY [ASC|DESC]",
    help='e.g. "metrics.acc DESC"; repeat for more.',
)
@click.option("--max-results", "-n", default=100, show_default=True, help="Runs per page.")
@click.option("--page-token", metavar="TOKEN", help="Continue from the token a previous search printed.")
@click.option("--all", "show_all", is_flag=True, help="Include deleted runs.")
@json_option
@pass_state
def search_runs(
    state: State,
    experiments: tuple[str, ...],
    filter_: str | None,
    order_by: tuple[str, ...],
    max_results: int,
    page_token: str | None,
    show_all: bool,
    as_json: bool,
) -> None:
    """Find runs by metrics, params, tags, attributes and datasets.

    The filter joins conditions with AND, OR, NOT and parentheses. Identifiers are metrics.KEY,
    params.KEY, tags.KEY, attributes.NAME (status, run_name, start_time, ...) and datasets.FIELD;
    strings are quoted, numbers are not. A key with spaces is written metrics.`my key`.

    \b
    Example:
      modelyard runs search --experiment quickstart \\
          --filter "metrics.accuracy > 0.9 AND params.alpha = '0.0001'" \\
          --order-by "metrics.accuracy DESC" -n 5
    """
    page = _search(
        state.client, experiments, _view(show_all, False), max_results, filter_, order_by, page_token
    )
    if as_json:
        print_json(page)
        return
    if not page.runs:
        err().print("No runs match.")
    else:
        text = " ".join([filter_ or "", *order_by])
        metrics = [m.strip('`"') for m in _METRIC_REF.findall(text)]
        params = [p.strip('`"') for p in _PARAM_REF.findall(text)]
        console, width = table_console()
        table = runs_table(
            page.runs, state.client, metrics, metrics_first=True, width=width, preferred_params=params
        )
        console.print(table)
    if page.next_page_token:
        out().print(f"Next page token: {page.next_page_token}", soft_wrap=True)
        err().print(f"[{DIM}]More runs match: repeat the command with --page-token and this token.[/]")


@runs.command("show")
@click.argument("run_id")
@json_option
@pass_state
def show_run(state: State, run_id: str, as_json: bool) -> None:
    """Show everything about one run.

    Its info, params, latest metrics, datasets, tags and where its artifacts are.

    \b
    Example:
      modelyard runs show 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e
    """
    run = state.client.get_run(run_id)
    if as_json:
        print_json(run)
        return
    _print_run(run, state.client)


def _print_run(run: Run, client: Client) -> None:
    console = out()
    info = run.info
    exp = client.get_experiment(info.experiment_id)
    console.print(f"[bold]Run[/] [{ID_STYLE}]{info.run_id}[/]  [bold]{esc(info.run_name)}[/]")
    rows: list[tuple[str, object]] = [
        ("Experiment", f"{esc(exp.name)} [{DIM}]({exp.experiment_id})[/]"),
        ("Status", status_text(info.status.value)),
        ("Started", fmt_time(info.start_time)),
        ("Ended", fmt_time(info.end_time)),
        ("Duration", run_duration(run)),
    ]
    if info.lifecycle_stage.value != "active":
        rows.append(("Stage", f"[red]{info.lifecycle_stage.value}[/]"))
    if info.parent_run_id:
        rows.append(("Parent run", info.parent_run_id))
    if info.description:
        rows.append(("Description", esc(info.description)))
    rows.append(("Artifact URI", esc(info.artifact_uri)))
    console.print(key_value_grid(rows))

    if run.data.params:
        table = new_table("Param", "Value", title="Params")
        for key, value in sorted(run.data.params.items()):
            table.add_row(esc(key), esc(value))
        console.print()
        console.print(table)
    if run.data.metrics:
        table = new_table("Metric", "Latest value", title="Metrics")
        table.columns[1].justify = "right"
        for key, num in sorted(run.data.metrics.items()):
            table.add_row(esc(key), fmt_metric(num))
        console.print()
        console.print(table)
    if run.inputs:
        table = new_table("Dataset", "Context", "Digest", "Rows", "Source", title="Datasets")
        for item in run.inputs:
            ds = item.dataset
            source = ds.source or ds.source_type or ""
            rows_text = "" if ds.num_rows is None else str(ds.num_rows)
            table.add_row(esc(ds.name), esc(item.context or ""), ds.digest, rows_text, esc(source))
        table.columns[4].overflow = "fold"
        console.print()
        console.print(table)
    if run.data.tags:
        table = new_table("Tag", "Value", title="Tags")
        table.columns[1].overflow = "fold"
        user = sorted((k, v) for k, v in run.data.tags.items() if not k.startswith(SYSTEM_TAG_PREFIX))
        system = sorted((k, v) for k, v in run.data.tags.items() if k.startswith(SYSTEM_TAG_PREFIX))
        for key, value in user:
            table.add_row(esc(key), esc(value))
        for key, value in system:
            table.add_row(f"[{DIM}]{esc(key)}[/]", f"[{DIM}]{esc(value)}[/]")
        console.print()
        console.print(table)
    console.print(f"\n[{DIM}]Artifacts: modelyard artifacts list {info.run_id}[/]")


@runs.command("delete")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@pass_state
def delete_runs(state: State, run_ids: tuple[str, ...]) -> None:
    """Delete one or more runs.

    They can be restored until `modelyard gc` purges them.

    \b
    Example:
      modelyard runs delete 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e 9b1c...
    """
    for run_id in run_ids:
        state.client.delete_run(run_id)
        out().print(f"Deleted run [{ID_STYLE}]{run_id}[/]")
    out().print(f"[{DIM}]Undo with: modelyard runs restore RUN_ID; purge for good with: modelyard gc[/]")


@runs.command("restore")
@click.argument("run_id")
@pass_state
def restore_run(state: State, run_id: str) -> None:
    """Restore a deleted run.

    \b
    Example:
      modelyard runs restore 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e
    """
    state.client.restore_run(run_id)
    out().print(f"Restored run [{ID_STYLE}]{run_id}[/]")


@runs.command("reproduce")
@click.argument("run_id")
@json_option
@pass_state
def reproduce(state: State, run_id: str, as_json: bool) -> None:
    """Print what reproduces a run: the exact commit (and its uncommitted diff), command, params and data.

    \b
    Example:
      modelyard runs reproduce 9f0c2d41aa...
    """
    from modelyard.registry.lineage import reproduction

    recipe = reproduction(state.client.get_run(run_id))
    if as_json:
        print_json(recipe)
        return
    console = out()
    console.soft_wrap = True  # commands stay on one line, ready to copy
    console.print(f"[bold]Reproduce run {recipe.run_id}[/] (experiment {recipe.experiment_id})\n")
    step = 1
    if recipe.git_commit:
        where = f" from {esc(recipe.git_repo_url)}" if recipe.git_repo_url else ""
        console.print(f"{step}. Check out the code{where}:\n     git checkout {recipe.git_commit}")
        step += 1
        if recipe.git_dirty:
            console.print(
                f"{step}. The run had uncommitted changes; apply them:\n"
                f"     modelyard artifacts download {recipe.run_id} {recipe.diff_artifact} --dest /tmp && "
                f"git apply /tmp/{recipe.diff_artifact}"
            )
            step += 1
    else:
        console.print(
            f"{step}. [yellow]No git commit was recorded[/] (the run did not start in a git repository)."
        )
        step += 1
    if recipe.packages_artifact:
        console.print(
            f"{step}. Install the same packages (Python {recipe.python_version}):\n"
            f"     modelyard artifacts download {recipe.run_id} {recipe.packages_artifact} --dest /tmp && "
            f"pip install -r /tmp/{recipe.packages_artifact}"
        )
        step += 1
    for data in recipe.datasets:
        console.print(
            f"{step}. Use dataset {esc(data['name'])} ({esc(data.get('context') or 'data')}) with digest "
            f"[{ID_STYLE}]{data['digest']}[/]"
            + (f" from {esc(data['source'])}" if data.get("source") else "")
        )
        step += 1
    console.print(f"{step}. Run:\n     {esc(recipe.command or '(the command was not recorded)')}")
    if recipe.params:
        console.print("\n   with these params:")
        console.print(key_value_grid((esc(k), esc(v)) for k, v in recipe.params.items()))


runs.add_command(compare_runs)
runs.add_command(metric_history)
