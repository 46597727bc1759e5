"""Serving benchmark: `modelyard serve` and `mlflow models serve` side by side, under load from `wrk`.

    python bench/serving.py [--quick] [--duration S] [--markdown docs/benchmarks.md] [--json out.json]

Run it with an interpreter that has Modelyard, MLflow, scikit-learn and torch installed (`.venv-bench`, see
bench/README.md), with `wrk` on PATH (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`).
Without MLflow only Modelyard is measured; without torch the PyTorch model is left out.

Two models, each fitted once and saved by both libraries from the same object, with the same input example:
a scikit-learn `LogisticRegression` on 20 float64 columns (a DataFrame example: a column signature) and a
PyTorch MLP 20→64→64→2 (a float32 array example: a tensor signature). Each server runs alone, one worker
process bound to 127.0.0.1, with its defaults: `modelyard serve DIR --trusted` (dynamic batching: at most
32 rows, 5 ms) and `mlflow models serve -m DIR --env-manager local` (one uvicorn worker). Before the load,
both must answer the same predictions as the model in this process for a few rows. Then `wrk -t 2 -c C
--latency` sends one single-row JSON request over and over on C keep-alive connections (closed loop: each
connection sends its next request when the last one is answered), for concurrency 16 and 64, each run after
a short untimed warm-up: MLflow's own format for each model, which both servers take at `/invocations`
(`{"dataframe_split": {"columns", "data"}}` for the table model, `{"inputs": [[...]]}` for the tensor
model), and Modelyard's Open Inference Protocol v2 endpoint as an extra (MLflow has none). Throughput counts
every answered request; any non-2xx answer is counted and flags the row. After each Modelyard run, the rows
per batch during that run are read from its Prometheus `/metrics` (`modelyard_serving_batch_size_rows`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tracking  # bench/tracking.py: machine description, idle waits, the table, Markdown and JSON output
from server import (
    ENV,
    free_port,
    settle,
    stop_server,
    tree_cpu,
)  # bench/server.py: ports, process trees, stopping
from tracking import machine, machine_busy, revision, version, wait_idle

FEATURES, CHECK_ROWS, SEED = 20, 8, 0
# seconds of load per run (and of untimed warm-up before it); idle waits; how long a server may take to start
FULL = dict(duration=20, warmup=3, concurrency=(16, 64), idle_wait_s=60, settle_max_s=30, start_max_s=120)
QUICK = dict(duration=5, warmup=1, concurrency=(16, 64), idle_wait_s=5, settle_max_s=10, start_max_s=120)
THREADS = 2  # wrk threads (never more than connections)
TARGET_RATIO = 10  # the target: at least 10x MLflow's throughput, with p99 below MLflow's p50
MODELS = {"sklearn": "scikit-learn LogisticRegression, 20 columns", "torch": "PyTorch MLP 20→64→64→2"}
SIDES = {"modelyard": "Modelyard", "mlflow": "MLflow"}
METRIC = "modelyard_serving_batch_size_rows"
SECTION = "## Serving benchmarks"


# the models: fitted and saved by both libraries, in a subprocess of their own -------------------------------
def prepare(tmp: Path) -> None:
    """Fit both models, save each with both libraries, and write what the benchmark sends and expects."""
    os.environ.update(ENV)
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    import modelyard.models

    X, y = make_classification(n_samples=2000, n_features=FEATURES, n_informative=10, random_state=SEED)
    columns = [f"f{i}" for i in range(FEATURES)]
    frame = pd.DataFrame(X, columns=columns)
    rows = X[:CHECK_ROWS]
    spec: dict[str, Any] = {}
    logistic = LogisticRegression(max_iter=1000).fit(frame, y)
    saved = {"modelyard": tmp / "modelyard-sklearn", "mlflow": tmp / "mlflow-sklearn"}
    modelyard.models.save_model(logistic, saved["modelyard"], input_example=frame.head(5))
    if version("mlflow"):
        import mlflow.sklearn

        mlflow.sklearn.save_model(  # requirements given: inferring them costs seconds and changes nothing here
            logistic, saved["mlflow"], input_example=frame.head(5), pip_requirements=["scikit-learn"]
        )
    spec["sklearn"] = {
        "paths": {k: str(v) for k, v in saved.items()},
        "invocations": [{"dataframe_split": {"columns": columns, "data": [r.tolist()]}} for r in rows],
        "v2": [v2_body("FP64", [r.tolist()]) for r in rows],
        "expected": logistic.predict(frame.head(CHECK_ROWS)).tolist(),
    }
    if version("torch"):
        import torch

        torch.manual_seed(SEED)
        net = torch.nn.Sequential(
            torch.nn.Linear(FEATURES, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 2),
        )
        x32, target = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(100):  # a few full-batch steps: a model that has learned something
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x32), target).backward()
            optimizer.step()
        net.eval()
        example = X[:5].astype(np.float32)
        saved = {"modelyard": tmp / "modelyard-torch", "mlflow": tmp / "mlflow-torch"}
        modelyard.models.save_model(net, saved["modelyard"], input_example=example)
        if version("mlflow"):
            import mlflow.pytorch

            mlflow.pytorch.save_model(net, saved["mlflow"], input_example=example, pip_requirements=["torch"])
        with torch.no_grad():
            expected = net(torch.from_numpy(rows.astype(np.float32))).numpy()
        spec["torch"] = {
            "paths": {k: str(v) for k, v in saved.items()},
            "invocations": [{"inputs": [r.tolist()]} for r in rows],
            "v2": [v2_body("FP32", [r.tolist()]) for r in rows],
            "expected": expected.tolist(),
        }
    (tmp / "models.json").write_text(json.dumps(spec))


def v2_body(datatype: str, rows: list[list[float]]) -> dict:
    flat = [v for row in rows for v in row]
    return {
        "inputs": [{"name": "input-0", "shape": [len(rows), FEATURES], "datatype": datatype, "data": flat}]
    }


# starting and stopping a model server ----------------------------------------------------------------------
def server_command(side: str, path: str, port: int, extra: list[str]) -> list[str]:
    scripts = Path(sys.executable).parent  # the console scripts of this interpreter's environment
    if side == "modelyard":
        return [str(scripts / "modelyard"), "serve", path, "--name", "bench", "--trusted",
                "--host", "127.0.0.1", "--port", str(port), *extra]  # fmt: skip
    return [str(scripts / "mlflow"), "models", "serve", "-m", path, "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def get(url: str, timeout: float = 2) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def post(url: str, body: dict) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return 0, str(exc)


def start(side: str, path: str, tmp: Path, sizes: dict) -> tuple[subprocess.Popen, str, dict]:
    """Start one server; seconds until /health answers, and until its process tree went idle after that."""
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp / f"{side}-server.log"
    scripts = str(Path(sys.executable).parent)  # `mlflow models serve` runs `uvicorn` from PATH
    env = {**os.environ, **ENV, "MODELYARD_HOME": str(tmp / "modelyard-home"),
           "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}  # fmt: skip
    command = server_command(side, path, port, sizes["serve_args"])
    t0 = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    while get(url + "/health")[0] != 200:
        if proc.poll() is not None or time.perf_counter() - t0 > sizes["start_max_s"]:
            stop_server(proc)
            sys.exit(f"{side} did not answer /health:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.01)
    ready_s = time.perf_counter() - t0
    idle_s = settle(proc.pid, t0, ready_s + sizes["settle_max_s"])
    return proc, url, {"ready_s": ready_s, "idle_s": idle_s}


# checking predictions and driving the load --------------------------------------------------------------------
def predictions(response: Any, endpoint: str) -> list:
    if endpoint == "v2":
        (output,) = response["outputs"]
        data, shape = output["data"], output["shape"]
        return data if len(shape) == 1 else [data[i : i + shape[1]] for i in range(0, len(data), shape[1])]
    return response["predictions"]


def check(url: str, spec: dict, endpoint: str, model: str) -> str | None:
    """None if the server predicts as the model does for each check row (one request per row); else why not."""
    import numpy as np

    path = "/v2/models/bench/infer" if endpoint == "v2" else "/invocations"
    got = []
    for body in spec[endpoint]:
        status, answer = post(url + path, body)
        if status != 200:
            return f"{path} answered {status}: {str(answer)[:200]}"
        try:
            got.extend(predictions(answer, endpoint))
        except (KeyError, TypeError, ValueError):
            return f"{path} answered {str(answer)[:200]}"
    expected = spec["expected"]
    same = (
        got == expected
        if model == "sklearn"
        else np.allclose(np.asarray(got, dtype=float), expected, rtol=1e-4, atol=1e-5)
    )
    return None if same else f"{path} predicted {got[:3]}..., the model {expected[:3]}..."


LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict:
    """One wrk run: its numbers from the script's `done` hook, and its own text output."""
    command = [shutil.which("wrk") or "wrk", "-t", str(min(THREADS, connections)), "-c", str(connections),
               "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(script), url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode or line is None:
        sys.exit(f"wrk failed (exit {done.returncode}): {done.stderr or done.stdout}")
    out = json.loads(line.removeprefix("WRK_JSON "))
    out["text"] = done.stdout.split("WRK_JSON")[0].rstrip()
    return out


def histogram(url: str) -> dict[str, float] | None:
    """The batch-size histogram's cumulative buckets (and `count`, `sum`) from /metrics; None without it."""
    status, text = get(url + "/metrics", timeout=10)
    if status != 200:
        return None
    out: dict[str, float] = {}
    for line in text.decode().splitlines():
        if not line.startswith(METRIC):
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith(METRIC + "_bucket"):
            le = re.search(r'le="([^"]+)"', name)
            if le:
                out[le.group(1)] = out.get(le.group(1), 0.0) + float(value)
        elif name.startswith((METRIC + "_count", METRIC + "_sum")):
            key = name[len(METRIC) + 1 :].split("{")[0]
            out[key] = out.get(key, 0.0) + float(value)
    return out


def batch_sizes(before: dict | None, after: dict | None) -> dict | None:
    """Batches predicted between two scrapes: how many, mean rows, and the count per bucket (upper bound)."""
    if before is None or after is None:
        return None
    count = after.get("count", 0) - before.get("count", 0)
    if count <= 0:
        return {"batches": 0, "mean_rows": None, "buckets": {}}
    bounds = sorted((k for k in after if k not in ("count", "sum")), key=lambda k: float(k))
    buckets, below = {}, 0.0
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0.0)
        if cumulative - below > 0:
            buckets[bound.removesuffix(".0")] = int(cumulative - below)
        below = cumulative
    return {"batches": int(count), "mean_rows": (after["sum"] - before.get("sum", 0.0)) / count,
            "buckets": buckets}  # fmt: skip


def describe_batches(sizes: dict | None) -> str:
    if not sizes or not sizes["batches"]:
        return "no batches seen" if sizes else "no /metrics"
    total = sizes["batches"]
    parts = ", ".join(f"≤{b}: {n / total:.0%}" for b, n in sizes["buckets"].items() if n / total >= 0.005)
    return f"{total:,} batches, mean {sizes['mean_rows']:.1f} rows ({parts})"


def load(side: str, url: str, pid: int, endpoint: str, body: dict, connections: int, tmp: Path,
         sizes: dict) -> dict:  # fmt: skip
    """Warm up, then one measured wrk run; with the CPU that the server, wrk and everything else used."""
    path = "/v2/models/bench/infer" if endpoint == "v2" else "/invocations"
    script = tmp / f"{side}-{endpoint}.lua"
    script.write_text(LUA.format(body=json.dumps(body)))
    idle = wait_idle(sizes["idle_wait_s"])
    if sizes["warmup"]:
        wrk(url + path, script, connections, sizes["warmup"])
    before = histogram(url) if side == "modelyard" else None
    wall0, busy0, own0, server0 = time.monotonic(), machine_busy()[0], sum(os.times()[:4]), tree_cpu(pid)
    result = wrk(url + path, script, connections, sizes["duration"])
    wall = time.monotonic() - wall0
    busy, own = machine_busy()[0] - busy0, sum(os.times()[:4]) - own0  # own: this process and wrk
    server = tree_cpu(pid) - server0
    seconds = result["duration_us"] / 1e6
    errors = result["status"] + result["connect"] + result["read"] + result["write"] + result["timeout"]
    out = {
        "requests": result["requests"],
        "value": result["requests"] / seconds,
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "non_2xx": result["status"],
        "socket_errors": errors - result["status"],
        "server_cpu_us": server / max(1, result["requests"]) * 1e6,
        "server_cores": server / wall,
        "wrk_cores": own / wall,
        "other_load": (busy - own - server) / wall,
        "idle_before": idle,
        "wrk_output": result["text"],
    }
    if side == "modelyard":
        out["batches"] = batch_sizes(before, histogram(url))
    return out


def measure(side: str, model: str, spec: dict, tmp: Path, sizes: dict, console: Any) -> dict:
    """One server for one model: start it, check its predictions, then each endpoint at each concurrency."""
    wait_idle(sizes["idle_wait_s"])
    console.print(f"  \\[{side}] {model}: start the server ...")
    proc, url, startup = start(side, spec["paths"][side], tmp, sizes)
    results: dict[str, Any] = {"startup": startup, "checks": {}, "runs": {}}
    try:
        endpoints = ["invocations", "v2"] if side == "modelyard" else ["invocations"]
        for endpoint in endpoints:
            problem = check(url, spec, endpoint, model)
            results["checks"][endpoint] = problem
            if problem:
                console.print(f"  [red]\\[{side}] {model} {endpoint}: wrong answers:[/] {problem}")
        for endpoint in endpoints:
            for connections in sizes["concurrency"]:
                console.print(f"  \\[{side}] {model} {endpoint}, {connections} connections, "
                              f"{sizes['duration']} s ...")  # fmt: skip
                run = load(side, url, proc.pid, endpoint, spec[endpoint][0], connections, tmp, sizes)
                results["runs"][f"{endpoint}-{connections}"] = run
                flag = f" [red]{run['non_2xx']} non-2xx answers[/]" if run["non_2xx"] else ""
                console.print(f"      {run['value']:,.0f} req/s, p50 {run['p50_ms']:.1f} ms, p99 "
                              f"{run['p99_ms']:.1f} ms{flag}" + (f"; {describe_batches(run['batches'])}"
                                                              if "batches" in run else ""))  # fmt: skip
    finally:
        results["stop"] = stop_server(proc)
    return results


# the table ---------------------------------------------------------------------------------------------------
HEADER = ["Workload", "Modelyard", "MLflow", "Ratio", "Target", "Result", "Note"]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return {"/s": f"{value:,.0f}/s", "ms": f"{value:.1f} ms", "s": f"{value:.2f} s"}[unit]


def row_notes(run: dict | None, who: str) -> list[str]:
    if not run:
        return []
    notes = []
    if run["non_2xx"] or run["socket_errors"]:
        notes.append(f"{who}: {run['non_2xx']:,} non-2xx answers, {run['socket_errors']:,} socket errors")
    if not run["idle_before"] or run["other_load"] > 0.25:
        notes.append(f"other processes busy during {who}'s run")
    return notes


def table_rows(results: dict, sizes: dict, models: list[str]) -> list[dict]:
    rows = []

    def add(key, label, unit, a, b, ratio, target, passed, notes):
        cells = [label, fmt(a, unit), fmt(b, unit), f"{ratio:,.1f}×" if ratio else "", target,
                 {True: "PASS", False: "MISS", None: ""}[passed], "; ".join(n for n in notes if n)]  # fmt: skip
        rows.append({"key": key, "unit": unit, "modelyard": a, "mlflow": b, "ratio": ratio, "passed": passed,
                     "cells": cells})  # fmt: skip

    for model in models:
        my, ml = results["modelyard"].get(model, {}), results.get("mlflow", {}).get(model, {})
        request = "`dataframe_split`" if model == "sklearn" else "`inputs`"
        for connections in sizes["concurrency"]:
            a = my.get("runs", {}).get(f"invocations-{connections}")
            b = ml.get("runs", {}).get(f"invocations-{connections}")
            what = f"{MODELS[model]}: `/invocations` {request}, 1 row, {connections} connections"
            base = row_notes(a, "Modelyard") + row_notes(b, "MLflow")
            ok = not (a and (a["non_2xx"] or a["socket_errors"]))  # MLflow's errors are only noted
            tput = (a["value"] if a else None, b["value"] if b else None)
            ratio = tput[0] / tput[1] if all(tput) else None
            notes = [describe_batches(a.get("batches")) if a else "",
                     f"server CPU per request: Modelyard {a['server_cpu_us']:,.0f} µs"
                     + (f", MLflow {b['server_cpu_us']:,.0f} µs" if b else "") if a else "", *base]  # fmt: skip
            add(f"{model}-{connections}-throughput", f"{what}: throughput", "/s", *tput, ratio,
                f"≥ {TARGET_RATIO}× MLflow", (ratio >= TARGET_RATIO and ok) if ratio else None, notes)  # fmt: skip
            p50 = (a["p50_ms"] if a else None, b["p50_ms"] if b else None)
            add(f"{model}-{connections}-p50", f"{what}: p50 latency", "ms", *p50,
                p50[1] / p50[0] if all(p50) else None, "", None, [])  # fmt: skip
            p99 = (a["p99_ms"] if a else None, b["p99_ms"] if b else None)
            passed = p99[0] < p50[1] and ok if p99[0] is not None and p50[1] else None
            add(f"{model}-{connections}-p99", f"{what}: p99 latency", "ms", *p99,
                p99[1] / p99[0] if all(p99) else None, "< MLflow's p50", passed, [])  # fmt: skip
        for connections in sizes["concurrency"]:
            a = my.get("runs", {}).get(f"v2-{connections}")
            if a:
                add(f"{model}-{connections}-v2", f"{MODELS[model]}: OIP v2 `/v2/models/bench/infer`, 1 row, "
                    f"{connections} connections: throughput (MLflow has no OIP v2)", "/s", a["value"], None,
                    None, "", None, [f"p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms",
                                     describe_batches(a.get("batches")), *row_notes(a, "Modelyard")])  # fmt: skip
        starts = (my.get("startup", {}).get("ready_s"), ml.get("startup", {}).get("ready_s"))
        add(f"{model}-startup", f"{MODELS[model]}: startup, process start → `/health` answers", "s", *starts,
            starts[1] / starts[0] if all(starts) else None, "", None, [])  # fmt: skip
    return rows


def batch_table(results: dict, models: list[str]) -> Any:
    from rich.table import Table

    table = Table(title="Modelyard: rows per predicted batch during each run (from /metrics)")
    for column in (
        "Model",
        "Endpoint",
        "Connections",
        "Batches",
        "Mean rows",
        "Distribution (upper bound: share)",
    ):
        table.add_column(
            column, justify="right" if column in ("Connections", "Batches", "Mean rows") else "left"
        )
    for model in models:
        for key, run in results["modelyard"].get(model, {}).get("runs", {}).items():
            endpoint, connections = key.rsplit("-", 1)
            sizes = run.get("batches") or {}
            mean = sizes.get("mean_rows")
            table.add_row(model, endpoint, connections, f"{sizes.get('batches', 0):,}",
                          f"{mean:.1f}" if mean else "n/a",
                          ", ".join(f"≤{b}: {n / sizes['batches']:.0%}" for b, n in sizes.get("buckets", {}).items()
                                    if n / sizes["batches"] >= 0.005))  # fmt: skip
    return table


def write_markdown(path: Path, rows: list[dict], info: dict) -> None:
    """Replace (or append at the end) the `## Serving benchmarks` section of `path`; the rest stays as it is."""
    s = info["sizes"]
    lines = [
        *tracking.markdown_head(f"{SECTION}: `modelyard serve` vs `mlflow models serve`", info, HEADER, rows),
        "How it is measured ([`bench/serving.py`](../bench/serving.py)): two models, each fitted once and saved by",
        "both libraries from the same object with the same input example — a scikit-learn `LogisticRegression` on 20",
        "float64 columns (DataFrame example: a column signature) and a PyTorch MLP 20→64→64→2 (float32 array",
        "example: a tensor signature). Each server runs alone with its defaults, one worker process on 127.0.0.1:",
        "`modelyard serve DIR --trusted` (dynamic batching, up to 32 rows per batch, one model thread) and `mlflow models",
        "serve -m DIR --env-manager local` (one uvicorn worker). Both must first answer the model's own predictions",
        f"for {CHECK_ROWS} rows ({info['check']}). Load: `wrk -t 2 -c C --latency` on the same machine sends one",
        "single-row JSON request on C keep-alive connections, each sending its next request as soon as the last is",
        f"answered, for {s['duration']} s after a {s['warmup']} s untimed warm-up; the body is MLflow's own format",
        "for the model, which both servers take at `/invocations`: `dataframe_split` (`columns` + `data`) for the",
        "table model, `inputs` (a list of rows) for the tensor model. The OIP v2 rows send the same row as one",
        "`[1, 20]` tensor (FP64 for the table model, FP32 for the MLP). Throughput counts every answer (a non-2xx",
        "answer is counted, shown in the note and fails the row); latencies are wrk's. “Server CPU per request” is",
        "the CPU time of the server's process tree over the run divided by the requests answered. Batches: rows per",
        "batch Modelyard predicted during the run, from its `modelyard_serving_batch_size_rows` histogram. Startup:",
        "launching the command to the first `/health` answer (model loaded), polled every 10 ms. Ratio: Modelyard's",
        "throughput over MLflow's, or MLflow's latency (time) over Modelyard's. A note “other processes busy” means",
        "that processes other than the server and wrk used over a quarter of a core during that run (the machine is",
        "shared), or that the machine was not idle before it: that side's figure is pessimistic. wrk shares the",
        "2 cores with the server, so a server that needs less CPU per request also leaves more to the client.",
        *(
            [f"Extra options given to `modelyard serve`: `{' '.join(s['serve_args'])}`."]
            if s["serve_args"]
            else []
        ),
        *[f"\n**Warning:** {w}" for w in info["warnings"]],
        "",
    ]
    text = path.read_text(encoding="utf-8") if path.exists() else ""  # read right before writing
    head, tail = text, ""
    if f"\n{SECTION}" in text or text.startswith(SECTION):
        head, rest = ("", text) if text.startswith(SECTION) else text.split(f"\n{SECTION}", 1)
        tail = rest[rest.index("\n## ") :] if "\n## " in rest else ""  # sections after ours stay
    head = head.rstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((head + "\n\n" if head else "") + "\n".join(lines) + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per run, short idle waits: a smoke run")
    parser.add_argument("--duration", type=float, help="seconds of load per run (default: 20, --quick: 5)")
    parser.add_argument("--concurrency", help="comma-separated connection counts (default: 16,64)")
    parser.add_argument("--only", choices=list(MODELS), action="append", help="models to run (default: all)")
    parser.add_argument(
        "--serve-args", default="", help="extra options for `modelyard serve`, e.g. '--max-batch-delay-ms 1'"
    )
    parser.add_argument(
        "--markdown", type=Path, help="write the `## Serving benchmarks` section into this file"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this JSON file")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (or not on PATH); it drives the load. Install it with "
                 "`apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS), then run this again.")  # fmt: skip
    sizes = dict(QUICK if args.quick else FULL)
    if args.duration:
        sizes["duration"] = args.duration
    if args.concurrency:
        sizes["concurrency"] = tuple(int(c) for c in args.concurrency.split(","))
    sizes["serve_args"] = shlex.split(args.serve_args)

    from rich.console import Console

    console, started = Console(), time.perf_counter()
    if not console.is_terminal:
        console.width = 200  # a log file should keep the table's rows on one line each
    info: dict[str, Any] = {
        "command": " ".join(["python", "bench/serving.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{machine()}, scikit-learn {version('scikit-learn')}, torch {version('torch') or 'not installed'}, "
        f"uvicorn {version('uvicorn')}, wrk {wrk_version()}",
        "revision": revision(),
        "sizes": sizes,
        "warnings": [],
    }
    console.print(f"[bold]Machine:[/] {info['machine']}; Modelyard source: {info['revision']}")
    sides = ["modelyard"] + (["mlflow"] if version("mlflow") else [])
    if len(sides) == 1:
        info["warnings"].append("MLflow is not installed in this interpreter: only Modelyard was measured.")
    models = [m for m in MODELS if not args.only or m in args.only]
    if "torch" in models and not version("torch"):
        models.remove("torch")
        info["warnings"].append("torch is not installed in this interpreter: the PyTorch model was left out.")
    for warning in info["warnings"]:
        console.print(f"[yellow]{warning}[/]")
    package = Path(__file__).resolve().parent.parent / "src" / "modelyard"
    source_hashes = {str(f): tracking.file_hash(str(f)) for f in package.rglob("*.py")}
    results: dict[str, dict] = {side: {} for side in sides}
    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        tracking.precompile_modelyard()
        console.print("  fit the models and save them with each library (untimed) ...")
        subprocess.run(
            [sys.executable, __file__, "--prepare", str(tmp)], check=True, env={**os.environ, **ENV}
        )
        spec = json.loads((tmp / "models.json").read_text())
        for model in models:
            for side in sides:
                results[side][model] = measure(side, model, spec[model], tmp, sizes, console)
                if not results[side][model]["stop"]["clean_stop"]:
                    info["warnings"].append(f"{SIDES[side]}'s {model} server had to be signalled to stop.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    changed = sorted(f for f, h in source_hashes.items() if tracking.file_hash(f) != h)
    if changed:  # another editor changed code under measurement
        info["warnings"].append(f"Modelyard source changed during the run: {', '.join(changed)}")
    problems = [f"{SIDES[side]} {model} {endpoint}: {problem}" for side in sides for model in models
                for endpoint, problem in results[side][model]["checks"].items() if problem]  # fmt: skip
    info["warnings"] += [f"wrong predictions: {p}" for p in problems]
    info["check"] = "FAILED, see the warnings" if problems else "both servers did, on every endpoint measured"
    info["elapsed_s"] = time.perf_counter() - started
    rows = table_rows(results, sizes, models)

    console.print(tracking.results_table(
        f"Serving: Modelyard vs MLflow ({'quick' if args.quick else 'full'}, {sizes['duration']:g} s per run)",
        rows, HEADER))  # fmt: skip
    console.print(batch_table(results, models))
    tracking.finish(console, args, rows, info, results, write_markdown)


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "not installed"
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
