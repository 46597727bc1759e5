"""The quickstart: a pipeline that trains a small classifier four ways in parallel, tracks every run, and
releases the best through a gate, in seconds; its second run comes from the cache.

It is the README's main example as a command. The pipeline (modelyard.examples.quickstart) loads scikit-learn's
bundled digits dataset (nothing is downloaded), validates and splits it, trains four settings in parallel
(each a tracked run with its parameters, datasets, per-epoch curves, accuracy and F1, a confusion-matrix
figure and the model), picks the best, registers it and promotes it to Production as `champion` through the
release gates. This module runs it with a live view, then prints the comparison, the release and its lineage,
then serves the champion with `modelyard serve` and sends it traffic.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

    from rich.console import Console

    from modelyard.pipelines.runner import PipelineRun
    from modelyard.schemas import Run

_EXTRAS = {"sklearn": "scikit-learn", "skops": "skops", "matplotlib": "matplotlib", "pandas": "pandas"}
# what the steps import, loaded once in the fork server rather than in each step process
_PRELOAD = (
    "pandas",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "skops.io",  # the trained models are saved with skops (~0.3 s to import)
    "matplotlib.figure",
)


def run(
    experiment: str = "quickstart",
    plot: bool = True,
    tracking_uri: str | None = None,
    console: Console | None = None,
    serve: bool = True,
) -> list[Run]:
    """Run the quickstart pipeline; print a comparison and the release; serve the release and send it traffic
    (`serve`); return the training runs, best first."""
    import modelyard as my
    from modelyard import config
    from modelyard.cli.pipelines import StepsView
    from modelyard.examples.quickstart import quickstart
    from modelyard.pipelines.executor import LocalExecutor

    _require_extras()
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    previous = my.get_tracking_uri()
    switch = tracking_uri is not None and tracking_uri != previous
    if switch:
        my.set_tracking_uri(tracking_uri)
    try:
        model_name = _model_name(experiment)
        with StepsView(f"pipeline quickstart → experiment {experiment}", quiet=False) as view:
            result = my.run_pipeline(
                quickstart,
                {"model_name": model_name, "plot": plot},
                experiment=experiment,
                executor=LocalExecutor(preload=_PRELOAD),
                tracking_uri=my.get_tracking_uri(),
                on_change=view.change,
            )
        if not result.ok:
            from modelyard.errors import InvalidState

            failed = {k: r.error for k, r in result.steps.items() if r.state == "FAILED"}
            raise InvalidState(
                f"The quickstart pipeline failed: {failed}. See: modelyard pipelines show {result.run_id}"
            )
        trained = [r.cached_from or r.run_id for k, r in result.steps.items() if k.startswith("train[")]
        runs = _compare(experiment, [str(run_id) for run_id in trained])  # a cache hit: the run that trained
        _table(console, experiment, runs)
        _cache_summary(console, result)
        if result.steps["promote"].state in ("SUCCEEDED", "CACHED"):
            _release(console, model_name, int(result.output("register")))
            if serve and _can_serve(console):
                _serve_and_send(console, model_name, my.get_tracking_uri())
        _hints(console, experiment, model_name, runs[0], my.get_tracking_uri(), result.run_id)
        return runs
    finally:
        if switch:
            my.set_tracking_uri(None if config.tracking_uri() == previous else previous)


def _require_extras() -> None:
    from importlib.util import find_spec

    from modelyard.errors import InvalidState

    missing = [dist for module, dist in _EXTRAS.items() if find_spec(module) is None]
    if missing:
        raise InvalidState(
            f"The quickstart needs {', '.join(missing)}. Install them with: pip install 'modelyard[quickstart]'"
        )


def _cache_summary(console: Console, result: PipelineRun) -> None:
    cached = sum(r.state == "CACHED" for r in result.steps.values())
    total = len(result.steps)
    if cached:
        console.print(
            f"[blue]≡[/] {cached} of {total} steps came from the cache (same code, parameters and data)."
        )
    else:
        console.print(f"[dim]Run it again: all {total} steps will come from the cache.[/]")


def _compare(experiment: str, run_ids: list[str]) -> list[Run]:
    """This quickstart's runs, best first: the same search `modelyard runs search` does."""
    import modelyard as my

    ids = ", ".join(f"'{run_id}'" for run_id in run_ids)
    runs: list[Run] = my.search_runs(
        experiment, filter=f"attributes.run_id IN ({ids})", order_by=["metrics.accuracy DESC"]
    )
    return runs


def _model_name(experiment: str) -> str:
    return re.sub(r"[^\w.\- ]", "-", f"{experiment}-digits").lstrip("-_. ") or "quickstart-digits"


def _release(console: Console, model_name: str, version: int) -> None:
    """The released version: the gates it passed, its Production stage and alias, and its lineage."""
    import modelyard as my
    from modelyard.cli.common import ID_STYLE, esc
    from modelyard.cli.models import lineage_tree

    registry = my.RegistryClient(my.get_tracking_uri())
    console.print(f"\n[bold]Released the best run[/] as {esc(model_name)} version [{ID_STYLE}]{version}[/]")
    for check in registry.check_gates(model_name, version, "Production"):
        console.print(f"  [green]✓[/] gate [bold]{esc(check.rule)}[/]  [dim]{esc(check.detail)}[/]")
    console.print(f"  [green]✓[/] in Production as models:/{esc(model_name)}@champion. Where it came from:")
    console.print(lineage_tree(my.lineage(f"models:/{model_name}/{version}", my.get_tracking_uri())))


def _can_serve(console: Console) -> bool:
    """Whether `modelyard serve` can run here (the server extra); if not, say how to get it."""
    from importlib.util import find_spec

    missing = [m for m in ("uvicorn", "starlette", "prometheus_client") if find_spec(m) is None]
    if missing:
        console.print(
            f"\n[yellow]Not serving the model:[/] {', '.join(missing)} missing. "
            "Install them with: pip install 'modelyard[server]'"
        )
    return not missing


def _serve_and_send(
    console: Console, model_name: str, tracking_uri: str, requests: int = 400, clients: int = 8
) -> None:
    """Serve models:/NAME@champion with `modelyard serve` (a process of its own, as a user would run it), send
    it single-row Open Inference Protocol requests of digits from `clients` threads, print what came back."""
    import http.client
    import json
    import os
    import socket
    import statistics
    import subprocess
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.datasets import load_digits

    from modelyard.cli.common import esc
    from modelyard.errors import InvalidState

    digits = load_digits()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"models:/{model_name}@champion"
    command = [sys.executable, "-m", "modelyard", "serve", uri, "--port", str(port)]
    env = {**os.environ, "MODELYARD_TRACKING_URI": tracking_uri}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with console.status(f"Starting modelyard serve {esc(uri)} …"):
            _wait_ready(server, port)
        path = f"/v2/models/{model_name}/infer"

        def send(i: int, conn: http.client.HTTPConnection) -> tuple[float, bool]:
            row = digits.data[i % len(digits.data)].tolist()
            body = json.dumps(
                {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP64", "data": row}]}
            )
            started = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            answer = conn.getresponse()
            data = json.loads(answer.read())
            if answer.status != 200:
                raise InvalidState(f"The model server answered {answer.status}: {data.get('error', data)}")
            correct = int(data["outputs"][0]["data"][0]) == int(digits.target[i % len(digits.target)])
            return time.perf_counter() - started, correct

        def client(first: int) -> list[tuple[float, bool]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                return [send(i, conn) for i in range(first, requests, clients)]
            finally:
                conn.close()

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = [a for part in pool.map(client, range(clients)) for a in part]
        wall = time.perf_counter() - started
        batches, rows = _batch_counts(port)
    finally:
        server.terminate()  # SIGTERM: it drains, then exits
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = sorted(seconds * 1000 for seconds, _ in answers)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    correct = sum(ok for _, ok in answers) / len(answers)
    console.print(f"\n[bold]Served[/] {esc(uri)} with [cyan]modelyard serve[/] on http://127.0.0.1:{port}")
    console.print(
        f"  [green]✓[/] {len(answers)} requests from {clients} clients: all answered, {correct:.1%} correct, "
        f"{len(answers) / wall:,.0f} requests/s, p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"
    )
    if batches:
        console.print(
            f"  [green]✓[/] batched into {batches:,} model calls of {rows / batches:.1f} rows on average"
        )


def _wait_ready(server: subprocess.Popen[str], port: int, timeout: float = 120) -> None:
    import http.client
    import time

    from modelyard.errors import InvalidState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = (server.stderr.read() if server.stderr else "").strip().splitlines()
            raise InvalidState(f"modelyard serve exited: {error[-1] if error else server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise InvalidState(f"modelyard serve did not become ready within {timeout:.0f} s.")


def _batch_counts(port: int) -> tuple[int, float]:
    """(batches, rows) the server's model predicted on, from its Prometheus metrics."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    values: dict[str, float] = {}
    for line in conn.getresponse().read().decode().splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("modelyard_serving_batch_size_rows_count", "modelyard_serving_batch_size_rows_sum"):
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return int(values.get("modelyard_serving_batch_size_rows_count", 0)), values.get(
        "modelyard_serving_batch_size_rows_sum", 0.0
    )


def _table(console: Console, experiment: str, runs: list[Run]) -> None:
    from modelyard.cli.common import ID_STYLE, esc, fmt_metric, new_table

    narrow = console.width < 86  # the run names repeat the params: drop them rather than fold every row
    table = new_table(title=f"Experiment {esc(experiment)}: {len(runs)} runs, best first")
    if not narrow:
        table.add_column("Run", overflow="fold")
    for header in ("lr", "alpha", "accuracy", "f1"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Run ID", style=ID_STYLE, no_wrap=True, min_width=32)
    for rank, run in enumerate(runs):
        p, m = run.data.params, run.data.metrics
        cells = [] if narrow else [esc(run.info.run_name)]
        cells += [p.get("lr", ""), p.get("alpha", ""), fmt_metric(m.get("accuracy")), fmt_metric(m.get("f1"))]
        table.add_row(*cells, run.run_id, style="bold green" if rank == 0 else None)
    console.print(table)


def _hints(
    console: Console, experiment: str, model_name: str, best: Run, tracking_uri: str, pipeline_run: str
) -> None:
    from modelyard.cli.common import esc
    from modelyard.store.sql.engine import redact

    console.print("\n[bold]Where everything is[/]")
    console.print(f"  tracking store   {esc(redact(tracking_uri))}", soft_wrap=True)
    console.print(f"  best run's files {esc(best.info.artifact_uri)}", soft_wrap=True)
    console.print("\n[bold]Try next[/]")
    hints = (
        (f"modelyard pipelines show {pipeline_run}", "the pipeline's steps, cache hits and durations"),
        (f"modelyard runs show {best.run_id}", "params, metrics, datasets and tags of the best run"),
        (f"modelyard artifacts list {best.run_id} -r", "its confusion matrix, model and environment"),
        (
            f"modelyard models show {shlex.quote(model_name)}",
            "the released model's versions, stages and gates",
        ),
        (f"modelyard runs reproduce {best.run_id}", "the commit, command, params and data to reproduce it"),
        (
            f"modelyard serve models:/{shlex.quote(model_name)}@champion",
            "serve the champion over the Open Inference Protocol, KServe v1 and /invocations",
        ),
        (
            f'modelyard runs search --experiment {shlex.quote(experiment)} --filter "metrics.accuracy > 0.9"',
            "search runs by metric",
        ),
    )
    for command, what in hints:
        console.print(f"  [cyan]{esc(command)}[/]", soft_wrap=True)
        console.print(f"      [dim]{what}[/]")
