"""`modelyard pipelines ...`: run, resume, inspect and compile pipelines."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    esc,
    fmt_duration,
    fmt_time,
    json_option,
    new_table,
    out,
    pass_state,
    print_json,
    status_text,
    tracking_uri_option,
)
from modelyard.cli.pipeline_schedules import schedule, schedules

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.pipelines.executor import Executor
    from modelyard.pipelines.records import StepRecord
    from modelyard.pipelines.runner import PipelineRun

STATE_STYLES = {
    "PENDING": "dim",
    "READY": "cyan",
    "RUNNING": "bold cyan",
    "WAITING": "yellow",
    "SUCCEEDED": "green",
    "CACHED": "blue",
    "SKIPPED": "dim",
    "FAILED": "bold red",
    "CANCELLED": "red",
}
STATE_ICONS = {
    "PENDING": "·",
    "READY": "○",
    "RUNNING": "▶",
    "WAITING": "↻",
    "SUCCEEDED": "✔",
    "CACHED": "≡",
    "SKIPPED": "–",
    "FAILED": "✘",
    "CANCELLED": "■",
}


@click.group("pipelines")
def pipelines() -> None:
    """Run pipelines of isolated, cached steps; resume failed runs; compile for Kubeflow Pipelines.

    A pipeline is a `@my.pipeline` function in a Python file, named FILE.py:FUNCTION (or
    package.module:FUNCTION). Every run is tracked: the pipeline run is a parent run, each step a child run.

    \b
    Example:
      modelyard pipelines run train.py:training --param lr=0.05 --max-parallel 4
      modelyard pipelines list
      modelyard pipelines show RUN_ID
      modelyard pipelines resume RUN_ID
      modelyard pipelines compile train.py:training --target kfp -o training.yaml
    """


def _executor(name: str, address: str | None, max_parallel: int | None) -> Executor:
    if name == "ray":
        from modelyard.pipelines.ray_executor import RayExecutor

        return RayExecutor(address=address, max_parallel=max_parallel)
    if address:
        raise click.BadParameter("--address is for --executor ray.", param_hint="--address")
    from modelyard.pipelines.executor import LocalExecutor

    return LocalExecutor(max_parallel)


def executor_options(func: Any) -> Any:
    func = click.option(
        "--address",
        metavar="HOST:PORT",
        help="Ray cluster to run on (with --executor ray); default: RAY_ADDRESS, else a local Ray.",
    )(func)
    func = click.option(
        "--executor",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="local: each step in its own process here; ray: each step as a Ray task.",
    )(func)
    func = click.option(
        "--max-parallel",
        type=click.IntRange(min=1),
        metavar="N",
        help="Steps running at once (default: CPU count; with Ray: the cluster's CPUs).",
    )(func)
    return click.option("--no-cache", is_flag=True, help="Run every step, even when a cached result exists.")(
        func
    )


class StepsView:
    """A table of step states that redraws as steps change (plain lines when stdout is not a terminal)."""

    def __init__(self, title: str, quiet: bool) -> None:
        self.title, self.quiet = title, quiet
        self.records: dict[str, StepRecord] = {}
        self.started: dict[str, float] = {}
        self.live: Any = None

    def __enter__(self) -> StepsView:
        if not self.quiet and sys.stdout.isatty():
            from rich.live import Live

            self.live = Live(self._table(), console=out(), refresh_per_second=8, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def change(self, key: str, record: StepRecord) -> None:
        if record.state == "RUNNING":
            self.started.setdefault(key, time.monotonic())
        self.records[key] = record
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet and record.state not in ("READY", "PENDING"):
            shown = record.error if record.state in ("FAILED", "SKIPPED", "CANCELLED", "WAITING") else None
            detail = f"  {'retrying after: ' if record.state == 'WAITING' else ''}{shown}" if shown else ""
            click.echo(f"{STATE_ICONS.get(record.state, '?')} {key:<28} {record.state}{detail}")

    def _table(self) -> Table:
        table = new_table("", "step", "state", "cache", "duration", "detail", title=self.title)
        for key, record in self.records.items():
            style = STATE_STYLES.get(record.state, "")
            if record.state == "RUNNING" and key in self.started:
                duration = fmt_duration((time.monotonic() - self.started[key]) * 1000) + " …"
            else:
                duration = fmt_duration(record.duration_s * 1000) if record.duration_s is not None else ""
            detail = (
                record.error if record.state in ("FAILED", "SKIPPED", "CANCELLED", "WAITING") else None
            ) or ""
            if record.state == "WAITING":
                detail = f"retrying after: {detail}"
            table.add_row(
                f"[{style}]{STATE_ICONS.get(record.state, '?')}[/]",
                esc(key),
                f"[{style}]{record.state}[/]",
                record.cache or "",
                duration,
                f"[{DIM}]{esc(detail[:120])}[/]",
            )
        return table


def _report(run: PipelineRun, as_json: bool) -> None:
    if as_json:
        print_json(
            {"run_id": run.run_id, "status": run.status, "steps": [r.to_dict() for r in run.steps.values()]}
        )
    else:
        counts: dict[str, int] = {}
        for record in run.steps.values():
            counts[record.state] = counts.get(record.state, 0) + 1
        summary = ", ".join(f"{n} {state.lower()}" for state, n in counts.items())
        console = out()
        console.print(
            status_text(run.status), f"pipeline run [{ID_STYLE}]{run.run_id}[/]: {summary}", soft_wrap=True
        )
        if not run.ok:
            console.print(
                f"[{DIM}]See a step's log: modelyard pipelines logs {run.run_id} STEP; "
                f"after a fix: modelyard pipelines resume {run.run_id}[/]",
                soft_wrap=True,
            )
    if not run.ok:
        raise SystemExit(1)


@pipelines.command("run")
@click.argument("target", metavar="FILE.py:FUNCTION")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A pipeline parameter (repeat)."
)
@click.option("--experiment", "-e", help="Experiment for the runs (default: the pipeline's name).")
@executor_options
@click.option("--quiet", "-q", is_flag=True, help="No live view; print only the result.")
@tracking_uri_option
@json_option
@pass_state
def run_command(
    state: State,
    target: str,
    params: tuple[str, ...],
    experiment: str | None,
    no_cache: bool,
    max_parallel: int | None,
    executor: str,
    address: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run a pipeline: every step whose code, parameters and inputs are unchanged is taken from the cache.

    Lists and dicts are given as JSON. Ctrl-C stops the running steps; `resume` continues later.

    \b
    Example:
      modelyard pipelines run train.py:training --param lr=0.05 --param 'depths=[3, 5, 8]'
      modelyard pipelines run train.py:training --executor ray --address 10.0.0.5:6379
    """
    from modelyard.pipelines.loading import load_pipeline, parse_params
    from modelyard.pipelines.runner import run_pipeline

    pipeline = load_pipeline(target)
    values = parse_params(pipeline, params)
    chosen = _executor(executor, address, max_parallel)
    with StepsView(f"pipeline {pipeline.name}", quiet or as_json) as view:
        try:
            result = run_pipeline(
                pipeline,
                values,
                experiment=experiment,
                executor=chosen,
                cache=not no_cache,
                tracking_uri=state.tracking_uri,
                on_change=view.change,
            )
        except KeyboardInterrupt as exc:
            _cancelled(exc)
    _report(result, as_json)


def _cancelled(exc: KeyboardInterrupt) -> None:
    run_id = getattr(exc, "run_id", None)
    hint = f"modelyard pipelines resume {run_id}" if run_id else "modelyard pipelines list"
    click.echo(f"Cancelled: the running steps were stopped. Continue with: {hint}", err=True)
    raise SystemExit(130)


@pipelines.command("resume")
@click.argument("run_id")
@click.option(
    "--force", is_flag=True, help="Resume a run still marked RUNNING whose process died (killed, crashed)."
)
@executor_options
@click.option("--quiet", "-q", is_flag=True, help="No live view; print only the result.")
@tracking_uri_option
@json_option
@pass_state
def resume_command(
    state: State,
    run_id: str,
    force: bool,
    no_cache: bool,
    max_parallel: int | None,
    executor: str,
    address: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Continue a failed or cancelled pipeline run: only failed, cancelled and not yet run steps run
    (and any step whose code or inputs changed since, e.g. after a fix).

    \b
    Example:
      modelyard pipelines resume 3f9c0d1e...
      modelyard pipelines resume 3f9c0d1e... --force   # its runner was killed (still marked RUNNING)
    """
    from modelyard.pipelines.runner import resume

    chosen = _executor(executor, address, max_parallel)
    with StepsView(f"pipeline run {run_id}", quiet or as_json) as view:
        try:
            result = resume(
                run_id,
                executor=chosen,
                cache=not no_cache,
                tracking_uri=state.tracking_uri,
                on_change=view.change,
                force=force,
            )
        except KeyboardInterrupt as exc:
            _cancelled(exc)
    _report(result, as_json)


@pipelines.command("list")
@click.option("--experiment", "-e", help="Only this experiment (name or id).")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@tracking_uri_option
@json_option
@pass_state
def list_command(state: State, experiment: str | None, limit: int, as_json: bool) -> None:
    """List pipeline runs, newest first.

    \b
    Example:
      modelyard pipelines list --experiment training
    """
    from modelyard.pipelines import records

    runs = records.pipeline_runs(state.client, experiment, limit)
    if as_json:
        print_json(
            [
                {
                    "run_id": r.info.run_id,
                    "pipeline": r.data.tags.get(records.TAG_PIPELINE),
                    "status": r.info.status.value,
                    "start_time": r.info.start_time,
                    "end_time": r.info.end_time,
                }
                for r in runs
            ]
        )
        return
    table = new_table("run id", "pipeline", "status", "started", "duration", "params")
    table.columns[0].min_width = 32  # ids are copied from here: keep them whole
    table.columns[5].no_wrap = True
    table.columns[5].overflow = "ellipsis"
    table.columns[5].max_width = 40
    for r in runs:
        duration = fmt_duration(r.info.end_time - r.info.start_time) if r.info.end_time else ""
        params = " ".join(f"{k}={v}" for k, v in r.data.params.items())
        table.add_row(
            f"[{ID_STYLE}]{r.info.run_id}[/]",
            esc(r.data.tags.get(records.TAG_PIPELINE, "")),
            status_text(r.info.status.value),
            fmt_time(r.info.start_time, short=True),
            duration,
            f"[{DIM}]{esc(params)}[/]",
        )
    out().print(
        table if runs else "No pipeline runs yet. Start one with: modelyard pipelines run FILE.py:FUNCTION"
    )


@pipelines.command("show")
@click.argument("run_id")
@tracking_uri_option
@json_option
@pass_state
def show_command(state: State, run_id: str, as_json: bool) -> None:
    """Show a pipeline run: its parameters and each step's state, cache use, duration and outputs.

    \b
    Example:
      modelyard pipelines show 3f9c0d1e...
    """
    from modelyard.pipelines import records

    info = records.describe(state.client, run_id)
    if as_json:
        print_json(info)
        return
    console = out()
    console.print(
        f"pipeline [bold]{esc(info['pipeline'])}[/]  run [{ID_STYLE}]{run_id}[/]  ",
        status_text(info["status"]),
    )
    if info["params"]:
        console.print(f"[{DIM}]params:[/] " + ", ".join(f"{k}={v}" for k, v in info["params"].items()))
    steps = {s["instance"]: s for s in info["steps"]}
    table = new_table("", "step", "state", "cache", "duration", "outputs / error")
    for node in info["graph"].get("steps", []):
        instances = [s for key, s in steps.items() if s["step"] == node["id"]] or [
            {
                "instance": node["id"],
                "state": "PENDING",
                "cache": None,
                "duration_s": None,
                "outputs": {},
                "error": None,
            }
        ]
        for s in instances:
            style = STATE_STYLES.get(s["state"], "")
            detail = s["error"] or ", ".join(f"{k}: {v['format']}" for k, v in s["outputs"].items())
            if s.get("cached_from"):
                detail += f"  (from run {s['cached_from'][:8]})"
            table.add_row(
                f"[{style}]{STATE_ICONS.get(s['state'], '?')}[/]",
                esc(s["instance"]),
                f"[{style}]{s['state']}[/]",
                s["cache"] or "",
                fmt_duration(s["duration_s"] * 1000) if s["duration_s"] is not None else "",
                f"[{DIM}]{esc(detail[:100])}[/]",
            )
    console.print(table)


@pipelines.command("logs")
@click.argument("run_id")
@click.argument("step")
@tracking_uri_option
@pass_state
def logs_command(state: State, run_id: str, step: str) -> None:
    """Print the captured output (stdout and stderr, every attempt) of one step of a pipeline run.

    \b
    Example:
      modelyard pipelines logs 3f9c0d1e... train[1]
    """
    from modelyard.errors import NotFound
    from modelyard.pipelines import records

    run = state.client.get_run(run_id)
    found = records.step_records(state.client, run)
    record = found.get(step)
    if record is None or record.run_id is None:
        known = ", ".join(found) or "none"
        raise NotFound(f"Pipeline run {run_id} has no step {step!r}; its steps: {known}.")
    store = state.client.artifact_store(record.run_id)
    if not store.exists(records.LOG_ARTIFACT):
        source = f" (a cache hit of run {record.cached_from})" if record.cached_from else ""
        click.echo(f"Step {step!r} has no log{source}.", err=True)
        return
    with store.open_read(records.LOG_ARTIFACT) as f:
        sys.stdout.write(f.read().decode("utf-8", "replace"))


@pipelines.command("compile")
@click.argument("target", metavar="FILE.py:FUNCTION")
@click.option("--target", "target_kind", type=click.Choice(["kfp"]), default="kfp", show_default=True)
@click.option(
    "--output", "-o", "output", type=click.Path(dir_okay=False), required=True, help="YAML file to write."
)
@click.option(
    "--image", help="Container image for steps that set none (must contain Modelyard and your code)."
)
@click.option(
    "--step-tracking-uri",
    metavar="URI",
    help="Tracking server the steps report to from the cluster (e.g. http://modelyard.ml:5000).",
)
@click.option(
    "--submit", is_flag=True, help="Also submit the compiled pipeline to Kubeflow Pipelines (--host)."
)
@click.option("--host", metavar="URL", help="Kubeflow Pipelines API endpoint for --submit.")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Run parameter for --submit."
)
def compile_command(
    target: str,
    target_kind: str,
    output: str,
    image: str | None,
    step_tracking_uri: str | None,
    submit: bool,
    host: str | None,
    params: tuple[str, ...],
) -> None:
    """Compile a pipeline to a Kubeflow Pipelines (v2) PipelineSpec, and optionally submit it.

    \b
    Example:
      modelyard pipelines compile train.py:training --target kfp -o training.yaml --image ghcr.io/acme/train:1.4
      modelyard pipelines compile train.py:training -o training.yaml --submit --host http://kfp.acme:8888
    """
    from modelyard.pipelines import kfp
    from modelyard.pipelines.loading import load_pipeline, parse_params

    if submit and not host:
        raise click.BadParameter(
            "--submit needs --host URL (the Kubeflow Pipelines API).", param_hint="--host"
        )
    pipeline = load_pipeline(target)
    values = parse_params(pipeline, params)
    path = kfp.compile_pipeline(pipeline, output, image=image, tracking_uri=step_tracking_uri)
    out().print(f"Wrote the Kubeflow Pipelines spec of [bold]{esc(pipeline.name)}[/] to {esc(path)}")
    if submit:
        run_id = kfp.submit(path, str(host), params=values)
        out().print(f"Submitted to {esc(host)}: run [{ID_STYLE}]{run_id}[/]")


pipelines.add_command(schedule)
pipelines.add_command(schedules)
