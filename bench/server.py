"""Server benchmark: `modelyard server` and `mlflow server` side by side, on the same workloads, in one run.

    python bench/server.py [--quick] [--markdown docs/benchmarks.md] [--json out.json]

Run it with an interpreter that has both installed (`.venv-bench`, see bench/README.md). Each server runs with
`--workers 1` on its own fresh SQLite database in one temp folder (Modelyard: `<tmp>/my.db`, MLflow:
`<tmp>/mlflow.db`). The 5,000 runs searched are seeded, untimed, into each database through each library's own
local client before its server starts (the same runs as bench/tracking.py). Each side's HTTP client then runs in
a fresh subprocess of its own (Modelyard: `Client(url)`, MLflow: `MlflowClient(url)`), so neither sees the
other's imports; for the latency row, that process starts 16 more client processes (one run each) that log
at once. Every workload waits for the machine to be idle first: `mlflow server` keeps using CPU for
15-25 s after /health answers (DESIGN.md, "Known pitfalls"), which the startup rows measure too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tracking  # bench/tracking.py: the same run data, workloads and measuring helpers
from tracking import fmt as fmt_tracking
from tracking import machine, machine_busy, revision, version, wait_idle

# Sizes; a side whose single-call workload would take over `log_metric_budget_s` is measured on a tenth of it.
# `clients` processes log `client_batches` batches of `batch` points each, all at once, for the latency row.
FULL = dict(log_metric=10_000, batch_total=10_000, batch=1_000, runs=5_000, history=100_000, search_reps=20,
            history_reps=3, starts=3, log_metric_budget_s=60, idle_wait_s=60, settle_max_s=90, clients=16,
            client_batches=20)  # fmt: skip
QUICK = dict(log_metric=1_000, batch_total=1_000, batch=100, runs=500, history=10_000, search_reps=20,
             history_reps=3, starts=1, log_metric_budget_s=30, idle_wait_s=5, settle_max_s=60, clients=16,
             client_batches=5)  # fmt: skip
QUIET = 0.05  # a server is idle once its process tree used under 5% of one core over 1 s
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "NO_PROXY": "127.0.0.1,localhost"}  # telemetry: no internet here


# the server's process tree, from /proc ---------------------------------------------------------------------------
def tree(root: int) -> list[tuple[int, list[str]]]:
    """(pid, /proc/pid/stat fields after the command name) of `root`, its descendants and its process group."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                procs[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited meanwhile
    members = {p for p, f in procs.items() if p == root or int(f[2]) == root}
    while new := {p for p, f in procs.items() if int(f[1]) in members} - members:
        members |= new
    return [(p, procs[p]) for p in members]


def tree_cpu(root: int) -> float:
    """CPU-seconds used by the tree so far (with its reaped children's)."""
    ticks = sum(sum(int(x) for x in f[11:15]) for _, f in tree(root))
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_memory(root: int) -> dict:
    """Resident memory of the tree in MB: RSS summed over processes (shared pages counted in each), and PSS."""
    out = {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0}
    for pid, _ in tree(root):
        for name, key in (("status", "VmRSS:"), ("smaps_rollup", "Pss:")):
            try:
                lines = Path(f"/proc/{pid}/{name}").read_text().splitlines()
            except OSError:
                continue
            kib = next((int(x.split()[1]) for x in lines if x.startswith(key)), 0)
            out["rss_mb" if key == "VmRSS:" else "pss_mb"] += kib / 1024
        out["processes"] += 1
    return out


# starting and stopping a server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(name: str, tmp: Path, port: int) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if name == "modelyard":
        store = ["--backend-store-uri", f"sqlite:///{tmp}/my.db", "--artifacts-uri", f"{tmp}/my-artifacts"]
    else:
        store = ["--backend-store-uri", f"sqlite:///{tmp}/mlflow.db", "--default-artifact-root", f"{tmp}/ml"]
    return [str(Path(sys.executable).parent / name), "server", *store, *common]  # the console script


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(name: str, tmp: Path, settle_max_s: float) -> tuple[subprocess.Popen, str, dict]:
    """Start one server; time until /health answers and until its process tree goes idle; its idle memory."""
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", (tmp / f"{name}-server.log").open("ab")
    env = {**os.environ, **ENV, "MODELYARD_HOME": str(tmp / "my-server")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        server_command(name, tmp, port), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    while not healthy(url):
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            stop_server(proc)
            tail = (tmp / f"{name}-server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} server did not answer /health:\n{tail}")
        time.sleep(0.01)
    health_s = time.perf_counter() - t0
    idle_s = settle(proc.pid, t0, settle_max_s)
    return proc, url, {"health_s": health_s, "idle_s": idle_s, **tree_memory(proc.pid)}


def settle(pid: int, t0: float, until_s: float) -> float | None:
    """Seconds from `t0` (perf_counter) until the process tree of `pid` went idle: the start of the first
    1 s window in which it used under QUIET of a core, sampled every 0.1 s; None if not within `until_s`."""
    samples: list[tuple[float, float]] = []
    while time.perf_counter() - t0 < until_s:
        now, cpu = time.perf_counter(), tree_cpu(pid)
        samples.append((now, cpu))
        old = [s for s in samples if now - s[0] >= 1.0]
        if old and cpu - old[-1][1] <= QUIET * (now - old[-1][0]):
            return old[-1][0] - t0
        time.sleep(0.1)
    return None


def stop_server(proc: subprocess.Popen) -> dict:
    """SIGTERM to the server; once it exited (at most 10 s), 5 s for the rest of its process group to exit too,
    then SIGTERM to what is left of the group, and after 5 s more SIGKILL. Clean: no group signal was needed."""
    t, clean = time.perf_counter(), True
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            clean = False
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            clean = False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while (alive := group_alive(proc)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not alive:
            break
    proc.wait()
    return {"stop_s": time.perf_counter() - t, "clean_stop": clean}


def group_alive(proc: subprocess.Popen) -> bool:
    """Whether a process of the server's group still runs (zombies waiting for their parent don't count)."""
    proc.poll()  # reap the leader
    return any(fields[0] != "Z" for _, fields in tree(proc.pid))


# the two HTTP clients, reusing bench/tracking.py's adapters ------------------------------------------------------
class ModelyardHttp(tracking.ModelyardSide):
    synchronous = (
        True  # log_metric: one request per point, answered before it returns; False: the SDK default
    )

    def __init__(self, url: str, tmp: Path) -> None:
        os.environ["MODELYARD_HOME"] = str(tmp / "my-client")
        from modelyard import Client, Metric

        self.client, self.Metric = Client(url), Metric

    def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
        self.client.log_metric(run_id, key, value, step=step, synchronous=self.synchronous)

    def metric_objects(self, points: tracking.Points) -> list:
        return [self.Metric(key=k, value=v, timestamp=t, step=s) for k, v, t, s in points]


class MlflowHttp(tracking.MlflowSide):
    synchronous = True  # MlflowClient's default; False: its asynchronous logging (a queue and a thread)

    def __init__(self, url: str, tmp: Path) -> None:
        os.chdir(tmp)
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        self.client, self.Metric, self.Param = MlflowClient(url), Metric, Param
        self.artifacts = (tmp / "mlflow-artifacts").as_uri()
        self.pending: list = []  # asynchronous log_metric calls not yet waited for

    def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
        operation = self.client.log_metric(run_id, key, value, step=step, synchronous=self.synchronous)
        if operation is not None:
            self.pending.append(operation)

    def flush(self) -> None:
        # mlflow.flush_async_logging() flushes the fluent API's store, not this client's: wait for each call.
        for operation in self.pending:
            operation.wait()  # raises if the point could not be stored
        self.pending.clear()

    def metric_objects(self, points: tracking.Points) -> list:
        return [self.Metric(k, v, t, s) for k, v, t, s in points]


HTTP_SIDES = {"modelyard": ModelyardHttp, "mlflow": MlflowHttp}


def seed(name: str, tmp: Path, n: int) -> None:
    """Untimed: n runs into the side's database through its local client, before its server starts."""
    side = tracking.SIDES[name](tmp)
    tracking.bench_runs(side, side.experiment("search"), n, end=False)


def counters(server_pid: int) -> tuple[float, float, float, float]:
    """Wall clock; CPU-seconds of the whole machine, of this process (with its ended children: the concurrent
    clients) and of the server's tree."""
    return time.monotonic(), machine_busy()[0], sum(os.times()[:4]), tree_cpu(server_pid)


def concurrent_client(name: str, url: str, tmp: Path, exp: str, sizes: dict) -> None:
    """One of the concurrent clients, in its own process (a training job of its own): its run and its batches
    made first, then `ready` on stdout; on `go` from stdin, `client_batches` log-batch calls one after the
    other, each timed alone; their milliseconds as JSON on stdout. It exits when its stdin closes, once
    every client answered: on 2 cores, 15 interpreters exiting would take CPU from the last client's calls."""
    os.environ.update(ENV)
    side = HTTP_SIDES[name](url, tmp)
    run_id, size, count = side.new_run(exp), sizes["batch"], sizes["client_batches"]
    batches = [side.metric_objects([("loss", 0.5, tracking.BASE_TS + s, s) for s in range(b * size, (b + 1) * size)])
               for b in range(count)]  # fmt: skip
    side.client.log_batch(run_id, metrics=side.metric_objects([("warm-up", 0.0, tracking.BASE_TS, 0)]))
    print("ready", flush=True)
    sys.stdin.readline()
    samples, errors = [], []
    for metrics in batches:
        t = time.perf_counter()
        try:
            side.client.log_batch(run_id, metrics=metrics)
        except Exception as exc:  # a refused or failed call still counts, with the time it took to fail
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
        samples.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"ms": samples, "errors": errors}), flush=True)
    sys.stdin.readline()  # exit once every client answered: a finished one's exit must not slow the others


def _line(proc: subprocess.Popen, wanted) -> str:
    """The next line of a client's stdout that is `wanted` (a library may print other lines before it)."""
    while line := proc.stdout.readline():  # type: ignore[union-attr]
        if wanted(line.strip()):
            return line.strip()
    raise RuntimeError(f"a concurrent client exited with {proc.wait()} before answering")


def bench_concurrent(name: str, url: str, tmp: Path, exp: str, sizes: dict, quick: bool) -> dict:
    """p99 of the log-batch calls of `clients` client processes started together, each sending its next batch
    as soon as the previous one is answered (closed loop: the heaviest load that many clients can make)."""
    me = [
        sys.executable,
        __file__,
        "--tmp",
        str(tmp),
        "--url",
        url,
        "--experiment",
        exp,
        *["--quick"] * quick,
    ]
    procs = [subprocess.Popen([*me, "--concurrent-client", name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(sizes["clients"])]  # fmt: skip
    try:
        for proc in procs:
            _line(proc, lambda line: line == "ready")
        t = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        answers = [json.loads(_line(proc, lambda line: line.startswith('{"ms"'))) for proc in procs]
        wall = time.perf_counter() - t
        for proc in procs:
            proc.stdin.close()  # type: ignore[union-attr]  # now they may exit
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.wait()
    samples = [ms for answer in answers for ms in answer["ms"]]
    errors = [error for answer in answers for error in answer["errors"]]
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    points = (len(samples) - len(errors)) * sizes["batch"]
    note = (f"p50 {statistics.median(samples):,.0f} ms, max {max(samples):,.0f} ms over {len(samples)} calls; "
            f"{points / wall:,.0f} points/s stored in all")  # fmt: skip
    if errors:
        note += f"; {len(errors)} calls failed, e.g. “{errors[0][:160]}”"
    return {
        "value": p99,
        "samples_ms": samples,
        "errors": errors,
        "points_per_s": points / wall,
        "note": note,
    }


def worker(name: str, url: str, server_pid: int, tmp: Path, sizes: dict, out: Path) -> None:
    """One side's HTTP client, in its own process: every workload in turn, raw numbers to `out` as JSON."""
    os.environ.update(ENV)
    side = HTTP_SIDES[name](url, tmp)
    results: dict[str, Any] = {"busy": []}

    def step(key: str, label: str, thunk) -> None:
        print(f"  [{name}] {label} ...", flush=True)
        idle = wait_idle(sizes["idle_wait_s"])
        before = counters(server_pid)
        results[key] = thunk()
        wall, busy, own, srv = (b - a for a, b in zip(before, counters(server_pid)))
        others = busy - own - srv  # CPU-seconds of processes other than the client and the server
        results[key] |= dict(wall_s=wall, client_cpu_s=own, server_cpu_s=srv, other_load=others / wall)
        if not idle or results[key]["other_load"] > 0.25:
            results["busy"].append(key)

    step("log_metric", f"{sizes['log_metric']:,} x log_metric", lambda: tracking.bench_log_metric(
        side, side.experiment("log_metric"), sizes["log_metric"], sizes["log_metric_budget_s"]))  # fmt: skip
    side.synchronous = False
    step("log_metric_buffered", f"{sizes['log_metric']:,} x log_metric, buffered", lambda: tracking.bench_log_metric(
        side, side.experiment("log_metric_buffered"), sizes["log_metric"], sizes["log_metric_budget_s"]))  # fmt: skip
    side.synchronous = True
    step("log_batch", f"{sizes['batch_total']:,} points by log-batch", lambda: tracking.bench_log_batch(
        side, side.experiment("log_batch"), sizes["batch_total"], sizes["batch"]))  # fmt: skip
    exp = side.client.get_experiment_by_name("search").experiment_id
    step("search", f"search {sizes['runs']:,} runs", lambda: tracking.bench_search(
        side, exp, sizes["search_reps"]))  # fmt: skip
    step("history", f"metric history of {sizes['history']:,} points", lambda: tracking.bench_history(
        side, side.experiment("history"), sizes["history"], sizes["history_reps"]))  # fmt: skip
    exp = side.experiment("concurrent")
    step("concurrent", f"{sizes['clients']} clients logging at once", lambda: bench_concurrent(
        name, url, tmp, exp, sizes, sizes is QUICK))  # fmt: skip
    out.write_text(json.dumps(results))


# the parent: seeding, servers, workers, the table ----------------------------------------------------------------
# key, label, unit, higher is better, target: ("ratio", x) = x times MLflow, ("abs", v) = Modelyard's own value
ROWS = [
    ("log_metric", "{log_metric:,} × `log_metric` over HTTP, one call per point", "/s", True, ("ratio", 20)),
    (
        "log_metric_buffered",
        "{log_metric:,} × `log_metric` over HTTP, SDK default: buffered, flushed at the end "
        "(MLflow: `synchronous=False`)",
        "/s",
        True,
        None,
    ),
    ("log_batch", "{batch_total:,} points by log-batch of {batch:,} over HTTP", "/s", True, ("ratio", 20)),
    (
        "concurrent",
        "p99 latency of a log-batch of {batch:,} points while {clients} clients log at once",
        "ms",
        False,
        ("abs", 100),
    ),
    ("search", "search {runs:,} runs: filter, order by, top 100", "ms", False, ("ratio", 10)),
    ("history", "metric history of {history:,} points over HTTP", "ms", False, ("ratio", 20)),
    ("health_s", "startup: process start → `/health` answers", "s", False, ("abs", 1.0)),
    ("idle_s", "startup: process start → server idle", "s", False, None),
    ("rss_mb", "idle RSS of the server's process tree, 1 worker", "MB", False, ("abs", 200)),
]
HEADER = ["Workload", "Modelyard", "MLflow", "Ratio", "Target", "Result", "Note"]


def fmt(value: float | None, unit: str) -> str:
    return f"{value:,.0f} MB" if unit == "MB" and value is not None else fmt_tracking(value, unit)


def startup_summary(starts: list[dict]) -> dict:
    """Median over the starts of each startup figure (`idle_s` None when a start never went idle)."""
    out: dict[str, Any] = {"starts": starts}
    for key in ("health_s", "idle_s", "rss_mb", "pss_mb"):
        values = [s[key] for s in starts if s[key] is not None]
        out[key] = {"value": statistics.median(values) if values else None}
        if len(values) < len(starts):
            out[key]["note"] = f"not idle within the wait in {len(starts) - len(values)} starts"
    pss, procs = out["pss_mb"]["value"], starts[-1]["processes"]
    out["rss_mb"]["note"] = f"{procs} process{'es' * (procs > 1)}, PSS {pss:,.0f} MB" if pss else ""
    return out


def table_rows(results: dict, sizes: dict) -> list[dict]:
    rows = []
    for key, label, unit, higher, target in ROWS:
        my, ml = results["modelyard"].get(key, {}), results.get("mlflow", {}).get(key, {})
        a, b = my.get("value"), ml.get("value")
        ratio = (a / b if higher else b / a) if a and b else None
        kind, goal = target or (None, None)
        passed = None
        if kind == "ratio" and ratio is not None:
            passed = ratio >= goal
        elif kind == "abs" and a is not None:
            passed = a <= goal
        notes = [f"{side} {r['note']}" for side, r in (("Modelyard", my), ("MLflow", ml)) if r.get("note")]
        notes += [f"other processes busy during {s}'s turn" for s in results if key in results[s]["busy"]]
        cells = [
            label.format(**sizes),
            fmt(a, unit),
            fmt(b, unit),
            f"{ratio:,.1f}×" if ratio else "",
            "" if kind is None else f"≥ {goal}× MLflow" if kind == "ratio" else f"≤ {fmt(goal, unit)}",
            {True: "PASS", False: "MISS", None: ""}[passed],
            "; ".join(n for n in notes if n),
        ]
        rows.append({"key": key, "unit": unit, "modelyard": a, "mlflow": b, "ratio": ratio, "target": target,
                     "passed": passed, "cells": cells})  # fmt: skip
    return rows


def write_markdown(path: Path, rows: list[dict], info: dict) -> None:
    """Replace (or append at the end) the `## Server benchmarks` section of `path`; the rest stays as it is."""
    s = info["sizes"]
    lines = [
        *tracking.markdown_head(
            "## Server benchmarks: `modelyard server` vs `mlflow server`", info, HEADER, rows
        ),
        "How it is measured ([`bench/server.py`](../bench/server.py)): each server runs alone, with `--workers 1`,",
        "bound to 127.0.0.1, on its own fresh SQLite database in a temp folder (`modelyard server",
        "--backend-store-uri sqlite:///…`; `mlflow server --backend-store-uri sqlite:///… --default-artifact-root …`,",
        "telemetry off), and is stopped with SIGTERM (what is left of its process group 5 s later gets SIGTERM, then",
        "SIGKILL). Before it starts, the runs searched (5 params, 5 metrics, 2 tags each: the tracking benchmark's",
        "seeded data) are written into its database by the library's own local client, untimed. Each side's HTTP",
        "client (Modelyard `Client(url)`, MLflow `MlflowClient(url)`) runs in a fresh subprocess and waits for an idle",
        "machine before each workload. `log_metric` sends one request per point and waits for its answer (Modelyard",
        "`synchronous=True`); the buffered row takes each SDK's background path instead (Modelyard's default",
        "buffered writer, MLflow's `synchronous=False` queue) and is timed until the final flush (Modelyard",
        "`flush()`, MLflow `flush_async_logging()`) has stored every point. Throughputs include building the metric",
        "objects; each is one pass, or the median of 3 to 10 passes adding up to 2 s. Search: median of",
        f"{s['search_reps']} calls after 2 warm-ups. Metric history: {s['history']:,} points logged in batches of",
        f"1,000, then the median of {s['history_reps']} calls. Startup (both packages byte-compiled, as pip",
        f"installs them): median of {s['starts']} starts, from",
        "launching the command to the first `/health` answer (polled every 10 ms), and to the start of the first",
        f"1 s window in which the server's process tree used under {QUIET:.0%} of a core; the idle memory is the RSS",
        "summed over that tree at that point (in the note, PSS, which counts shared pages once). Concurrent",
        f"clients: {s['clients']} client processes on the same machine, each with a run of its own and its",
        f"{s['client_batches']} batches built beforehand, start together, and each sends its next batch as soon as",
        f"its last one is answered (closed loop: the heaviest load {s['clients']} clients can make); the p99 is over",
        "all their calls, each timed alone; the note gives the p50, the max and the points stored per second in all.",
        "Ratio: MLflow's time (or memory) over Modelyard's, or Modelyard's throughput over MLflow's. A note “other",
        "processes busy” means that processes other than the client (with its concurrent clients) and the server",
        "used over a quarter of a core during that workload (the machine is shared), which makes that side's",
        f"figure pessimistic. Search sanity check: {info['search_check']}.",
        *[f"\n**Warning:** {w}" for w in info["warnings"]],
        "",
    ]
    text = path.read_text(encoding="utf-8") if path.exists() else ""  # read right before writing
    section = "## Server benchmarks"
    head, tail = text, ""
    if f"\n{section}" in text or text.startswith(section):
        head, rest = ("", text) if text.startswith(section) else text.split(f"\n{section}", 1)
        tail = rest[rest.index("\n## ") :] if "\n## " in rest else ""  # sections after ours stay
    head = head.rstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((head + "\n\n" if head else "") + "\n".join(lines) + tail, encoding="utf-8")


def measure(name: str, tmp: Path, sizes: dict, quick: bool) -> dict:
    """One side: seed its database, start its server `starts` times, run the client worker on the last one."""
    print(f"  [{name}] seed {sizes['runs']:,} runs into its database (untimed) ...", flush=True)
    me = [sys.executable, __file__, "--tmp", str(tmp), *["--quick"] * quick]
    subprocess.run([*me, "--seed", name], check=True)
    starts, stops = [], []
    for i in range(sizes["starts"]):
        print(f"  [{name}] start the server ({i + 1} of {sizes['starts']}) ...", flush=True)
        wait_idle(sizes["idle_wait_s"])
        proc, url, start = start_server(name, tmp, sizes["settle_max_s"])
        starts.append(start)
        if i < sizes["starts"] - 1:
            stops.append(stop_server(proc))
    try:
        out = tmp / f"{name}.json"
        subprocess.run([*me, "--worker", name, "--url", url, "--server-pid", str(proc.pid), "--out", str(out)],
                       check=True)  # fmt: skip
        results = json.loads(out.read_text())
    finally:
        stops.append(stop_server(proc))
    return results | startup_summary(starts) | {"stops": stops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller sizes, for a smoke run")
    parser.add_argument("--markdown", type=Path, help="write the `## Server benchmarks` section at its end")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this JSON file")
    for hidden in (
        "--worker",
        "--seed",
        "--url",
        "--server-pid",
        "--tmp",
        "--out",
        "--concurrent-client",
        "--experiment",
    ):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.seed:
        return seed(args.seed, Path(args.tmp), sizes["runs"])
    if args.worker:
        return worker(args.worker, args.url, int(args.server_pid), Path(args.tmp), sizes, Path(args.out))
    if args.concurrent_client:
        return concurrent_client(args.concurrent_client, args.url, Path(args.tmp), args.experiment, sizes)
    if not version("mlflow"):
        sys.exit("MLflow is not installed in this interpreter: install it (see bench/README.md).")

    from rich.console import Console
    from rich.table import Table

    console, started = Console(), time.perf_counter()
    if not console.is_terminal:
        console.width = 200  # a log file should keep the table's rows on one line each
    info: dict[str, Any] = {
        "command": " ".join(["python", "bench/server.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{machine()}, uvicorn {version('uvicorn')}, FastAPI {version('fastapi')}",
        "revision": revision(),
        "sizes": sizes,
        "warnings": [],
    }
    console.print(f"[bold]Machine:[/] {info['machine']}; Modelyard source: {info['revision']}")
    tracking.precompile_modelyard()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        for name in ("modelyard", "mlflow"):
            results[name] = measure(name, Path(tmp), sizes, args.quick)
            if not all(s["clean_stop"] for s in results[name]["stops"]):
                info["warnings"].append(f"{name} server's process group had to be signalled to stop.")
    info["elapsed_s"] = time.perf_counter() - started
    mismatch = tracking.check_search(results)
    info["warnings"] += [mismatch] if mismatch else []
    info["search_check"] = (
        "FAILED, see the warning" if mismatch
        else "both servers returned the same runs (same count, same acc values in the same order)"
    )  # fmt: skip
    rows = table_rows(results, sizes)

    console.print(
        tracking.results_table(
            f"Server: Modelyard vs MLflow ({'quick' if args.quick else 'full'} sizes)", rows, HEADER
        )
    )
    split = Table(title="Where the time went: wall seconds, and CPU-seconds of the client and of the server")
    for column in ("Workload", "Side", "Wall", "Client CPU", "Server CPU"):
        split.add_column(column, justify="left" if column in ("Workload", "Side") else "right")
    for key in ("log_metric", "log_metric_buffered", "log_batch", "search", "history", "concurrent"):
        for name, r in results.items():
            split.add_row(key, name, *(f"{r[key][k]:.2f} s" for k in ("wall_s", "client_cpu_s", "server_cpu_s")))  # fmt: skip
    console.print(split)
    tracking.finish(console, args, rows, info, results, write_markdown)


if __name__ == "__main__":
    main()
