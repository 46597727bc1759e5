"""`modelyard pipelines schedule` and `modelyard pipelines schedules ...`: pipelines that a server runs on a
cron schedule.

Pointed at a server (--tracking-uri http://...) the commands act as MODELYARD_TOKEN's user, who must be an
admin when the server has --auth on. On a database (sqlite:///..., postgresql://...) they change the
schedules of every server that runs on it; `schedules run` then runs the pipeline here, in the foreground.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_time,
    json_option,
    key_value_grid,
    new_table,
    out,
    pass_state,
    print_json,
    status_text,
    tracking_uri_option,
)
from modelyard.schemas.pipelines import PipelineSchedule

if TYPE_CHECKING:
    from modelyard.store.rest_schedules import RestScheduleStore
    from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore


def _uri(state: State) -> str:
    from modelyard import config

    return state.tracking_uri or config.tracking_uri()


@contextlib.contextmanager
def _store(state: State) -> Iterator[SqlPipelineScheduleStore | RestScheduleStore]:
    uri = _uri(state)
    store: SqlPipelineScheduleStore | RestScheduleStore
    if uri.startswith(("http://", "https://")):
        from modelyard.store.rest_schedules import RestScheduleStore

        store = RestScheduleStore(uri)
    else:
        from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore

        store = SqlPipelineScheduleStore.open(uri)
    try:
        yield store
    finally:
        store.close()


def _stored_target(target: str) -> str:
    """FILE.py:FUNCTION with FILE made absolute (the server runs it from its own working directory)."""
    from modelyard.store.pipeline_schedules import is_file, is_file_target

    source, _, func = target.rpartition(":")
    if is_file_target(source) or is_file(source):
        return f"{Path(source).expanduser().resolve()}:{func}"
    return target


def _last(s: PipelineSchedule) -> str:
    if s.last_status is None:
        return f"[{DIM}]never ran[/]"
    return f"[{_STYLES.get(s.last_status, '')}]{s.last_status}[/]"


_STYLES = {"RUNNING": "cyan", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}


def _state(s: PipelineSchedule) -> str:
    return "[green]active[/]" if s.enabled else "[yellow]paused[/]"


@click.command("schedule")
@click.argument("target", metavar="FILE.py:FUNCTION")
@click.option("--cron", required=True, metavar="EXPR", help="When to run: 5 fields (minute hour day-of-month "
              "month day-of-week) or @hourly, @daily, @weekly, @monthly.")  # fmt: skip
@click.option("--name", help="The schedule's name (default: the pipeline's name).")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A pipeline parameter (repeat)."
)
@click.option("--experiment", "-e", help="Experiment for the runs (default: the pipeline's name).")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="Time zone of the cron expression.")
@click.option("--paused", is_flag=True, help="Create it paused; start it with `schedules resume`.")
@tracking_uri_option
@json_option
@pass_state
def schedule(
    state: State,
    target: str,
    cron: str,
    name: str | None,
    params: tuple[str, ...],
    experiment: str | None,
    tz: str,
    paused: bool,
    as_json: bool,
) -> None:
    """Have the server run a pipeline on a cron schedule.

    The pipeline is loaded and its parameters checked here first; a FILE is stored as an absolute path, so
    it must be at the same place on the server's host. The server's scheduler runs each due schedule as
    `modelyard pipelines run` on its own store; a time missed while no server ran is made up once. With
    --auth on the server, only an admin may schedule pipelines (they run code on its host).

    \b
    Example:
      modelyard pipelines schedule train.py:training --cron "0 3 * * *" --param lr=0.05
      modelyard pipelines schedule flows/etl.py:nightly --cron @hourly --name etl-hourly -e etl
      modelyard pipelines schedule train.py:training --cron "30 6 * * MON-FRI" --timezone Europe/Paris
    """
    from modelyard.pipelines.loading import load_pipeline, parse_params
    from modelyard.store.pipeline_schedules import validate_cron, validate_timezone

    pipeline = load_pipeline(target)
    values = parse_params(pipeline, params)
    pipeline.resolve_params(values)  # every required parameter is given
    zone = validate_timezone(tz)
    expression = validate_cron(cron, zone)
    with _store(state) as store:
        made = store.create_schedule(
            name or pipeline.name, _stored_target(target), expression, values, experiment, zone, not paused
        )
    if as_json:
        print_json(made)
        return
    when = fmt_time(made.next_run_time) if made.next_run_time else "when resumed"
    err().print(
        f"Scheduled [{ID_STYLE}]{esc(made.name)}[/]: {esc(made.target)} at '{esc(made.cron)}' ({made.timezone}); "
        f"next run {when}."
    )
    err().print(f"[{DIM}]See it with: modelyard pipelines schedules show {esc(made.name)}[/]")


@click.group("schedules")
def schedules() -> None:
    """List, pause, resume, delete and run the pipelines a server runs on a schedule.

    \b
    Example:
      modelyard pipelines schedules list
      modelyard pipelines schedules show training
      modelyard pipelines schedules pause training
      modelyard pipelines schedules run training
    """


@schedules.command("list")
@tracking_uri_option
@json_option
@pass_state
def list_schedules(state: State, as_json: bool) -> None:
    """List schedules: pipeline, cron expression, next run, and how the latest run ended.

    \b
    Example:
      modelyard pipelines schedules list --tracking-uri http://127.0.0.1:5000
    """
    with _store(state) as store:
        found = store.list_schedules()
    if as_json:
        print_json(found)
        return
    if not found:
        err().print(
            'No schedules. Create one with: modelyard pipelines schedule FILE.py:FUNC --cron "0 3 * * *"'
        )
        return
    table = new_table(
        "Name", "Pipeline", "Cron", "State", "Next run", "Last run", "Last status", "Last run id"
    )
    table.columns[0].style = ID_STYLE
    table.columns[2].no_wrap = True  # a cron expression split over two lines reads as two
    table.columns[1].overflow = "ellipsis"
    for s in found:
        table.add_row(
            esc(s.name),
            esc(s.target),
            esc(s.cron) + (f" [{DIM}]{esc(s.timezone)}[/]" if s.timezone != "UTC" else ""),
            _state(s),
            fmt_time(s.next_run_time, short=True) if s.next_run_time else "-",
            fmt_time(s.last_run_time, short=True),
            _last(s),
            s.last_run_id or "-",
        )
    out().print(table)


@schedules.command("show")
@click.argument("name")
@tracking_uri_option
@json_option
@pass_state
def show(state: State, name: str, as_json: bool) -> None:
    """Show one schedule, with its latest run's id, status and error.

    \b
    Example:
      modelyard pipelines schedules show training
    """
    with _store(state) as store:
        s = store.get_schedule(name)
    if as_json:
        print_json(s)
        return
    params = ", ".join(f"{k}={v}" for k, v in s.params.items()) or "-"
    rows = [
        ("Name", f"[{ID_STYLE}]{esc(s.name)}[/]"),
        ("Pipeline", esc(s.target)),
        ("Parameters", esc(params)),
        ("Experiment", esc(s.experiment or "(the pipeline's name)")),
        ("Cron", f"{esc(s.cron)} ({esc(s.timezone)})"),
        ("State", _state(s)),
        ("Next run", fmt_time(s.next_run_time) if s.next_run_time else "-"),
        ("Last run", fmt_time(s.last_run_time)),
        ("Last status", _last(s)),
        ("Last run id", s.last_run_id or "-"),
        ("Created", f"{fmt_time(s.created_time)}" + (f" by {esc(s.created_by)}" if s.created_by else "")),
    ]
    if s.last_error:
        rows.append(("Last error", f"[red]{esc(s.last_error[-2000:])}[/]"))
    out().print(key_value_grid(rows))
    if s.last_run_id:
        err().print(f"[{DIM}]See the run with: modelyard pipelines show {s.last_run_id}[/]")


def _set_enabled(state: State, name: str, enabled: bool) -> None:
    with _store(state) as store:
        s = store.update_schedule(name, enabled=enabled)
    if enabled:
        err().print(f"Schedule {esc(s.name)} is active; next run {fmt_time(s.next_run_time)}.")
    else:
        err().print(
            f"Schedule {esc(s.name)} is paused. Resume it with: modelyard pipelines schedules resume {esc(s.name)}"
        )


@schedules.command("pause")
@click.argument("name")
@tracking_uri_option
@pass_state
def pause(state: State, name: str) -> None:
    """Stop running a schedule until it is resumed (a run in progress goes on).

    \b
    Example:
      modelyard pipelines schedules pause training
    """
    _set_enabled(state, name, False)


@schedules.command("resume")
@click.argument("name")
@tracking_uri_option
@pass_state
def resume(state: State, name: str) -> None:
    """Run a paused schedule again, from its next time on (times missed while paused are skipped).

    \b
    Example:
      modelyard pipelines schedules resume training
    """
    _set_enabled(state, name, True)


@schedules.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@tracking_uri_option
@pass_state
def delete(state: State, name: str, yes: bool) -> None:
    """Delete a schedule (its pipeline runs stay in the tracking store).

    \b
    Example:
      modelyard pipelines schedules delete training --yes
    """
    if not yes:
        click.confirm(f"Delete pipeline schedule {name}?", abort=True, err=True)
    with _store(state) as store:
        store.delete_schedule(name)
    err().print(f"Deleted schedule {esc(name)}.")


@schedules.command("run")
@click.argument("name")
@tracking_uri_option
@json_option
@pass_state
def run(state: State, name: str, as_json: bool) -> None:
    """Run a schedule's pipeline now. Through a server, the server starts it in the background; on a
    database, it runs here in the foreground and the schedule records how it ended.

    \b
    Example:
      modelyard pipelines schedules run training
    """
    from modelyard.store.rest_schedules import RestScheduleStore

    with _store(state) as store:
        if isinstance(store, RestScheduleStore):
            started = store.run_schedule(name)
            if as_json:
                print_json(started)
                return
            err().print(
                f"The server started a run of {esc(started.name)}. "
                f"See how it ends with: modelyard pipelines schedules show {esc(started.name)}"
            )
            return
        from modelyard.server.scheduler import run_blocking

        with err().status(f"Running {esc(name)} ..."):
            outcome = run_blocking(store, name, _uri(state))
    if as_json:
        print_json({"run_id": outcome.run_id, "status": outcome.status, "error": outcome.error})
    else:
        line = status_text(outcome.status)
        run_id = f" pipeline run [{ID_STYLE}]{outcome.run_id}[/]" if outcome.run_id else ""
        out().print(line, f"schedule {esc(name)}:{run_id}")
        if outcome.error:
            err().print(f"[red]{esc(outcome.error[-2000:])}[/]")
    if outcome.status != "FINISHED":
        raise SystemExit(1)


__all__ = ["schedule", "schedules"]
