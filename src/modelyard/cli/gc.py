"""`modelyard gc`: purge deleted runs and experiments, with their artifacts, for good."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import TYPE_CHECKING

import click

from modelyard.cli.common import DIM, ID_STYLE, State, esc, fmt_time, new_table, out, pass_state

if TYPE_CHECKING:
    from modelyard.schemas import Experiment, Run
    from modelyard.tracking.client import Client

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_age(text: str) -> int:
    """An age such as 30s, 30m, 12h, 7d or 2w, in milliseconds."""
    m = _AGE.match(text)
    if m is None:
        raise click.BadParameter(
            f"{text!r} is not an age; write a number and a unit: 30m, 12h, 7d or 2w",
            param_hint="--older-than",
        )
    return int(float(m.group(1)) * _UNITS_MS[m.group(2).lower()])


def _doomed(client: Client, older_than_ms: int | None) -> tuple[list[Run], list[Experiment]]:
    cutoff = None if older_than_ms is None else int(time.time() * 1000) - older_than_ms
    # The SDK has no call that lists deleted runs across experiments; the store's gc query is the one place.
    runs = client.deleted_runs(older_than=cutoff)
    experiments = [
        exp
        for exp in client.search_experiments(view_type="DELETED_ONLY", max_results=50_000)
        if cutoff is None or (exp.last_update_time or 0) <= cutoff
    ]
    return runs, experiments


def _show(client: Client, runs: list[Run], experiments: list[Experiment], inside: Counter[str]) -> None:
    console = out()
    if runs:
        names: dict[str, str] = {}
        table = new_table("Run ID", "Name", "Experiment", "Started", title=f"Deleted runs ({len(runs)})")
        table.columns[0].style = ID_STYLE
        table.columns[0].no_wrap = True
        for run in runs:
            exp_id = run.info.experiment_id
            if exp_id not in names:
                names[exp_id] = client.get_experiment(exp_id).name
            table.add_row(
                run.run_id,
                esc(run.info.run_name),
                esc(names[exp_id]),
                fmt_time(run.info.start_time, short=True),
            )
        console.print(table)
    if experiments:
        table = new_table(
            "ID", "Name", "Runs", "Deleted", "Artifacts", title=f"Deleted experiments ({len(experiments)})"
        )
        table.columns[0].style = ID_STYLE
        table.columns[2].justify = "right"
        table.columns[4].overflow = "fold"
        for exp in experiments:
            table.add_row(
                exp.experiment_id,
                esc(exp.name),
                str(inside[exp.experiment_id]),
                fmt_time(exp.last_update_time, short=True),
                esc(exp.artifact_location),
            )
        console.print(table)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@click.command("gc")
@click.option(
    "--older-than",
    metavar="AGE",
    help="Only what was deleted at least this long ago: 30m, 12h, 7d, 2w (default: everything deleted).",
)
@click.option("--dry-run", is_flag=True, help="List what would be purged; purge nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def gc(state: State, older_than: str | None, dry_run: bool, yes: bool) -> None:
    """Purge deleted runs and experiments for good.

    `modelyard runs delete` and `modelyard experiments delete` only mark things deleted, so they can be
    restored. gc removes them from the database and deletes their artifact folders; this cannot be undone.
    It lists what it will purge and asks first.

    \b
    Example:
      modelyard gc --older-than 7d --dry-run
      modelyard gc --older-than 7d --yes
    """
    age = parse_age(older_than) if older_than else None
    client = state.client
    runs, experiments = _doomed(client, age)
    if not runs and not experiments:
        out().print(
            "Nothing to purge: no deleted runs or experiments"
            + (f" older than {older_than}." if age else ".")
        )
        return
    # Runs of a purged experiment go with it (database cascade, and its whole artifact folder).
    doomed_ids = {exp.experiment_id for exp in experiments}
    inside = Counter(r.info.experiment_id for r in runs if r.info.experiment_id in doomed_ids)
    runs = [r for r in runs if r.info.experiment_id not in doomed_ids]
    _show(client, runs, experiments, inside)
    parts = [_plural(len(runs), "run")] if runs else []
    if experiments:
        with_runs = f" (with their {_plural(sum(inside.values()), 'run')})" if inside else ""
        parts.append(_plural(len(experiments), "experiment") + with_runs)
    what = " and ".join(parts)
    if dry_run:
        out().print(f"[{DIM}]Dry run: would purge {what}. Nothing was deleted.[/]")
        return
    if not yes:
        click.confirm(f"Permanently delete {what} with their artifacts?", abort=True, err=True)
    for run in runs:
        client.purge_run(run.run_id)
    for exp in experiments:
        client.purge_experiment(exp.experiment_id)
    out().print(f"[green]Purged {what} and their artifacts.[/]")
