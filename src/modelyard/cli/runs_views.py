"""`modelyard runs compare` (runs side by side) and `modelyard runs metric` (one metric's history as a chart)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    esc,
    fmt_metric,
    fmt_time,
    json_option,
    key_value_grid,
    new_table,
    pass_state,
    print_json,
    run_duration,
    status_text,
    table_console,
)

if TYPE_CHECKING:
    from modelyard.schemas import MetricHistory, Run

DIFFERS = "bold yellow"
MAX_ROWS = 20  # history rows printed at most (evenly spread; --json has every point)


@click.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID RUN_ID...")
@click.option("--diff-only", is_flag=True, help="Show only the params and metrics that differ.")
@json_option
@pass_state
def compare_runs(state: State, run_ids: tuple[str, ...], diff_only: bool, as_json: bool) -> None:
    """Compare runs side by side: their params and latest metrics, one column per run.

    Rows whose values differ between the runs are highlighted (and marked with *); --diff-only hides
    the others.

    \b
    Example:
      modelyard runs compare 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e 9b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e
      modelyard runs compare RUN_A RUN_B RUN_C --diff-only
    """
    if len(run_ids) < 2:
        raise click.BadParameter("give at least two runs to compare.", param_hint="RUN_ID RUN_ID...")
    runs = [state.client.get_run(run_id) for run_id in dict.fromkeys(run_ids)]
    params = _side_by_side([r.data.params for r in runs])
    metrics = _side_by_side([r.data.metrics for r in runs])
    if as_json:
        print_json(
            {
                "runs": [{"run_id": r.run_id, "run_name": r.info.run_name} for r in runs],
                "params": {k: values for k, (values, _) in params.items()},
                "metrics": {k: values for k, (values, _) in metrics.items()},
                "differ": {
                    "params": [k for k, (_, differs) in params.items() if differs],
                    "metrics": [k for k, (_, differs) in metrics.items() if differs],
                },
            }
        )
        return
    experiments = {r.info.experiment_id: "" for r in runs}
    for experiment_id in experiments:
        experiments[experiment_id] = state.client.get_experiment(experiment_id).name
    table = new_table("", *(esc(r.info.run_name or r.run_id[:8]) for r in runs))
    table.columns[0].no_wrap = True
    for column in table.columns[1:]:
        column.overflow = "fold"
    table.add_row("Run ID", *(f"[{ID_STYLE}]{r.run_id}[/]" for r in runs))
    table.add_row("Experiment", *(esc(experiments[r.info.experiment_id]) for r in runs))
    table.add_row("Status", *(status_text(r.info.status.value) for r in runs))
    table.add_row("Started", *(fmt_time(r.info.start_time, short=True) for r in runs))
    table.add_row("Duration", *(run_duration(r) for r in runs), end_section=True)
    for prefix, rows, fmt in (("params", params, str), ("metrics", metrics, fmt_metric)):
        for key, (values, differs) in rows.items():
            if diff_only and not differs:
                continue
            cells = ["" if v is None else esc(fmt(v)) for v in values]
            if differs:
                table.add_row(f"[{DIFFERS}]* {prefix}.{esc(key)}[/]", *(f"[{DIFFERS}]{c}[/]" for c in cells))
            else:
                table.add_row(f"[{DIM}]  {prefix}.{esc(key)}[/]", *cells)
    console, _ = table_console()
    console.print(table)


def _side_by_side(rows: list[dict[str, Any]]) -> dict[str, tuple[list[Any], bool]]:
    """Each key's values across `rows` (None where a row lacks it), and whether they differ."""
    keys = sorted({key for row in rows for key in row})
    out: dict[str, tuple[list[Any], bool]] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        out[key] = (values, len({repr(v) for v in values}) > 1)
    return out


@click.command("metric")
@click.argument("run_id")
@click.argument("key")
@click.option("--no-chart", is_flag=True, help="Print the points only, without the chart.")
@click.option("--height", default=15, show_default=True, type=click.IntRange(5, 100), help="Chart rows.")
@json_option
@pass_state
def metric_history(state: State, run_id: str, key: str, no_chart: bool, height: int, as_json: bool) -> None:
    """Print the history of one metric of a run, with a line chart of it.

    \b
    Example:
      modelyard runs metric 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e train_loss
      modelyard runs metric 3f2a9c0e5b7d4c1e8a6f0b2d4e6a8c0e val_accuracy --json
    """
    from modelyard.errors import NotFound

    run = state.client.get_run(run_id)
    history = state.client.get_metric_history(run.run_id, key)
    if not len(history):
        known = ", ".join(sorted(run.data.metrics)) or "none"
        raise NotFound(f"Run {run.run_id} has no metric {key!r}; its metrics: {known}.")
    if as_json:
        print_json(history)
        return
    console, _ = table_console()
    _print_summary(console, run, history)
    if not no_chart and len(history) > 1:
        console.print()
        console.out(
            _chart(history, console.width if console.is_terminal else 80, height, console.is_terminal)
        )
    console.print()
    table = new_table("Step", "Value", "Time")
    table.columns[0].justify = table.columns[1].justify = "right"
    shown = _spread(len(history), MAX_ROWS)
    for i in shown:
        table.add_row(str(history.steps[i]), fmt_metric(history.values[i]), fmt_time(history.timestamps[i]))
    console.print(table)
    if len(shown) < len(history):
        console.print(f"[{DIM}]{len(shown)} of {len(history)} points shown; --json prints every one.[/]")


def _print_summary(console: Any, run: Run, history: MetricHistory) -> None:
    values = history.values
    low = min(range(len(values)), key=values.__getitem__)
    high = max(range(len(values)), key=values.__getitem__)
    console.print(
        f"[bold]{esc(history.key)}[/] of run [{ID_STYLE}]{run.run_id}[/] [bold]{esc(run.info.run_name)}[/]"
    )
    console.print(
        key_value_grid(
            [
                ("Points", f"{len(values)} (steps {history.steps[0]} to {history.steps[-1]})"),
                ("Last", fmt_metric(values[-1])),
                ("Min", f"{fmt_metric(values[low])} at step {history.steps[low]}"),
                ("Max", f"{fmt_metric(values[high])} at step {history.steps[high]}"),
            ]
        )
    )


def _chart(history: MetricHistory, width: int, height: int, color: bool) -> str:
    """The line chart (plotext) of value against step; against the point's number when steps repeat."""
    import plotext as plt

    steps = history.steps
    increasing = all(a < b for a, b in itertools.pairwise(steps))
    xs = list(steps) if increasing else list(range(1, len(steps) + 1))
    plt.clear_figure()
    plt.theme("clear")  # the terminal's own colors
    plt.plotsize(min(width, 100), height)
    plt.plot(xs, list(history.values), marker="braille")
    plt.xlabel("step" if increasing else "point")
    text = str(plt.build())
    plt.clear_figure()
    return text if color else str(plt.uncolorize(text))


def _spread(count: int, most: int) -> list[int]:
    """At most `most` indices of 0..count-1, evenly spread, the first and last always in."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})
