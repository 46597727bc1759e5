"""`modelyard rollout MODEL_URI CANDIDATE_URI`: serve MODEL_URI with CANDIDATE_URI as its canary and move the
traffic to the candidate step by step while guard metrics hold; promote it in the registry at the end, or
roll it back at the first violated guard (see `modelyard.serving.rollout`)."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.common import State, err, tracking_uri_option
from modelyard.cli.serve import (
    _served_model,
    limit_model_threads,
    model_identity,
    payload_log_config,
    serve,
    side_models,
)
from modelyard.cli.serve_run import listen, run_recorded

# Options that mean the same as in `modelyard serve`: the same click objects, defined once there.
_SERVE_OPTIONS = (
    "name",
    "host",
    "port",
    "max_batch_size",
    "max_batch_delay_ms",
    "max_queue",
    "timeout_ms",
    "trusted",
    "log_payloads",
    "payload_log_uri",
    "no_metrics",
    "no_record",
    "model_threads",
)


def _steps(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(p.strip().rstrip("%")) for p in value.split(",") if p.strip())
    except ValueError:
        steps = ()
    if (
        not steps
        or any(not 0 < p <= 100 for p in steps)
        or list(steps) != sorted(set(steps))
        or steps[-1] != 100
    ):
        raise click.BadParameter(
            f"{value!r}: write increasing percentages ending with 100, e.g. 10,50,100.",
            param_hint="'--steps'",
        )
    return steps


def _parsed(param: click.Parameter, value: str | None, parser: str, *args: str) -> Any:
    """`modelyard.serving.rollout.<parser>(value, *args)` (imported when used); its error names the option."""
    if value is None:
        return None
    from modelyard.errors import InvalidArgument
    from modelyard.serving import rollout as plans

    try:
        return getattr(plans, parser)(value, *args)
    except InvalidArgument as exc:
        raise click.BadParameter(exc.message, param_hint=f"'{max(param.opts, key=len)}'") from None


@click.command("rollout")
@click.argument("model_uri", metavar="MODEL_URI")
@click.argument("candidate_uri", metavar="CANDIDATE_URI")
@click.option(
    "--steps",
    default="10,50,100",
    metavar="PERCENTS",
    show_default=True,
    callback=_steps,
    help="The candidate's share of the traffic at each step, in percent; the last is 100.",
)
@click.option(
    "--hold",
    default="5m",
    show_default=True,
    metavar="DURATION",
    callback=lambda _c, p, v: _parsed(p, v, "parse_duration"),
    help="How long each step is held while the guards are checked (30s, 5m, 1h).",
)
@click.option(
    "--max-error-rate",
    default="1%",
    show_default=True,
    metavar="FRACTION",
    callback=lambda _c, p, v: _parsed(p, v, "parse_fraction", "The maximum error rate"),
    help="Guard: most 5xx answers of the candidate per answered request (0.01 or 1%).",
)
@click.option(
    "--max-p99-ms",
    type=click.FloatRange(0, min_open=True),
    help="Guard: highest p99 latency of the candidate, in milliseconds [default: not checked].",
)
@click.option(
    "--min-agreement",
    metavar="FRACTION",
    callback=lambda _c, p, v: _parsed(p, v, "parse_fraction", "The minimum agreement"),
    help="Guard: the candidate also gets a copy of the requests the current version answers, and must give "
    "the same output for at least this fraction of rows (0.95 or 95%) [default: not checked].",
)
@click.option(
    "--min-requests",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="A step passes only once the candidate answered this many requests in it.",
)
@click.option(
    "--alias",
    "promote_alias",
    metavar="NAME",
    help="Promote by moving this alias [default: MODEL_URI's alias].",
)
@click.option(
    "--stage",
    "promote_stage",
    type=click.Choice(["Staging", "Production"], case_sensitive=False),
    help="Promote by moving the candidate to this stage, archiving the versions there [default: MODEL_URI's "
    "stage].",
)
@click.option(
    "--exit-when-done",
    is_flag=True,
    help="Stop serving after the promotion or rollback (exit status 0: promoted, 1: rolled back).",
)
@tracking_uri_option
@click.pass_context
def rollout(
    ctx: click.Context,
    model_uri: str,
    candidate_uri: str,
    steps: tuple[float, ...],
    hold: float,
    max_error_rate: float,
    max_p99_ms: float | None,
    min_agreement: float | None,
    min_requests: int,
    promote_alias: str | None,
    promote_stage: str | None,
    exit_when_done: bool,
    name: str | None,
    host: str,
    port: int,
    max_batch_size: int,
    max_batch_delay_ms: float,
    max_queue: int,
    timeout_ms: float | None,
    trusted: bool,
    log_payloads: float | None,
    payload_log_uri: str | None,
    no_metrics: bool,
    no_record: bool,
    model_threads: int | None,
) -> None:
    """Roll CANDIDATE_URI out over MODEL_URI while serving: the candidate takes a growing share of the
    requests (--steps), each step held for --hold while its guards are checked on the candidate's requests
    (error rate, p99 latency, agreement with the current version). A violated guard rolls back at once: the
    candidate gets no more traffic and MODEL_URI goes on serving. After the last step the candidate is
    promoted in the registry (MODEL_URI's alias or stage, or --alias/--stage) and serves alone.

    Every step's numbers and decision are recorded as rollout.* tags of the candidate's version: see them
    with `modelyard models events NAME`. The traffic at each step and the outcome are also recorded in the
    deployment's history: see `modelyard deployments list --model NAME`.

    \b
    Example: promote version 5 to @champion if it holds at 10%, 50% and 100% for 5 minutes each
      modelyard rollout models:/iris@champion models:/iris/5 --max-error-rate 1% --max-p99-ms 250
    Example (a quick rollout that must agree with Production, then exits; for CI):
      modelyard rollout models:/iris/Production models:/iris/6 --steps 25,100 --hold 2m \\
        --min-agreement 99% --exit-when-done
    """
    from modelyard.registry.uris import model_version_for
    from modelyard.serving import BatchConfig, Deployment, create_serving_app
    from modelyard.serving.rollout import Guards, Rollout, RolloutPlan, format_duration

    limit_model_threads(model_threads)
    state = ctx.find_object(State)
    if state is not None and state.tracking_uri:
        from modelyard.tracking.fluent import set_tracking_uri

        set_tracking_uri(state.tracking_uri)
    if not candidate_uri.startswith("models:/"):
        raise click.UsageError(
            "CANDIDATE_URI must be a registry version to be promoted: models:/NAME/VERSION (register it with "
            "`modelyard models register`)."
        )
    found = model_version_for(candidate_uri)
    alias, stage = promote_alias, promote_stage
    if alias is None and stage is None:
        alias, stage = _promotion_of(model_uri)
    if alias is None and stage is None:
        raise click.UsageError(
            f"Say where to promote the candidate: --alias NAME or --stage Production ({model_uri} names no "
            "alias or stage)."
        )
    served_name, version, load_uri = model_identity(model_uri, name)
    candidate = str(found.version)
    if load_uri == f"models:/{found.name}/{found.version}":
        raise click.UsageError(f"{candidate_uri} is the version {model_uri} names: nothing to roll out.")
    plan = RolloutPlan(
        served_name,
        candidate,
        steps=steps,
        hold=hold,
        guards=Guards(max_error_rate, max_p99_ms, min_agreement, min_requests),
        registry_name=found.name,
        registry_version=found.version,
        promote_alias=alias,
        promote_stage=stage.capitalize() if stage else None,
        check_interval=min(1.0, hold / 5),  # a violated guard rolls back within a second
    )
    config = BatchConfig(
        max_batch_size=max_batch_size,
        max_batch_delay=max_batch_delay_ms / 1000,
        max_queue=max_queue,
        timeout=timeout_ms / 1000 if timeout_ms is not None else None,
    )
    listener = listen(host, port)  # a busy port fails here: before loading, announcing or recording
    ctx.call_on_close(listener.close)
    current = _served_model(served_name, version, load_uri, config, trusted, None, None, {})
    deployment = Deployment([current, *side_models(served_name, version, candidate_uri, (), config, trusted)])
    if min_agreement is not None:
        deployment.mirror(served_name, candidate)
    driver = Rollout(deployment, plan, on_step=_print_step)
    driver.check_gates()  # a promotion the gates would refuse: say so now, not after the last step
    servers: list[Any] = []
    results: list[Any] = []

    async def drive() -> None:
        try:
            result = await driver.run()
        except Exception as exc:
            from modelyard.errors import ModelyardError

            message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            err().print(f"[red]The rollout stopped:[/] {message}")
        else:
            results.append(result)
            if result.outcome == "promoted":
                err().print(
                    f"[green]Promoted[/] {found.name} version {candidate} to {plan.target}; it serves alone "
                    f"now (version {version} drained)."
                )
            else:
                err().print(
                    f"[red]Rolled back[/] {found.name} version {candidate}: {result.reason}. Still serving "
                    f"version {version}."
                )
        if exit_when_done and servers:
            servers[0].should_exit = True

    app = create_serving_app(
        deployment,
        metrics=not no_metrics,
        payload_log=payload_log_config(log_payloads, payload_log_uri),
        background=[drive],
    )
    route = " -> ".join(f"{p:g}%" for p in steps)
    err().print(
        f"[green]Rolling out[/] {found.name} version {candidate} over version {version} on "
        f"{listener.url}  (OIP v2: /v2/models/{served_name}/infer)\n  steps {route}, "
        f"{format_duration(hold)} each; guards: {plan.guards.describe()}; "
        f"then {plan.target} -> version {candidate}"
    )
    info = {"rollout": f"version {candidate} over version {version}"}
    run_recorded(
        app, deployment, served_name, listener, record=not no_record, info=info, started=servers.append
    )
    if exit_when_done and not (results and results[0].outcome == "promoted"):
        ctx.exit(1)


def _promotion_of(uri: str) -> tuple[str | None, str | None]:
    """(alias, stage) that a `models:/NAME@ALIAS` or `models:/NAME/STAGE` URI follows."""
    from modelyard.errors import InvalidArgument
    from modelyard.registry.uris import parse_models_uri

    try:
        _, kind, value = parse_models_uri(uri)
    except InvalidArgument:
        return None, None
    return (value if kind == "alias" else None), (value if kind == "stage" else None)


def _print_step(report: Any) -> None:
    mark = "[red]x[/]" if report.decision == "rollback" else "[green]ok[/]"
    err().print(f"  {mark} step {report.step}/{report.steps}  {report.summary()}")


rollout.params.extend(p for p in serve.params if p.name in _SERVE_OPTIONS)
