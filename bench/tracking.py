"""Tracking benchmark: Modelyard and MLflow side by side, on the same workloads, in one run.

    python bench/tracking.py [--quick] [--skip-100k] [--markdown docs/benchmarks.md] [--json out.json]

Run it with an interpreter that has both installed (`.venv-bench`, see bench/README.md); without MLflow only
Modelyard is measured. Each library runs in a fresh subprocess of its own against its own fresh embedded store in
one temp folder (Modelyard: `sqlite:///<tmp>/my.db` with MODELYARD_HOME=<tmp>/my; MLflow: `sqlite:///<tmp>/mlflow.db`,
artifacts under <tmp>), so neither sees the other's imports, threads or garbage. Both generate their data from
the same seeds. Store set-up (schema creation, migrations) is never timed, and each workload waits for the machine
to be idle first (a peer may stay busy after start-up: DESIGN.md, "Known pitfalls").
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

SEED = 20240601
BASE_TS = 1_700_000_000_000  # fixed metric timestamps (ms), identical on both sides
FILTER = "metrics.acc > 0.5 and params.lr = '0.01'"
ORDER = "metrics.acc DESC"
# Sizes; a side whose single-call workload would take over `log_metric_budget_s` is measured on a tenth of it,
# MLflow joins the big search only if seeding it is projected to take under `seed_budget_s`, and each
# workload waits up to `idle_wait_s` for an idle machine.
FULL = dict(log_metric=10_000, batch_total=10_000, batch=1_000, runs=5_000, big_runs=100_000, history=100_000,
            search_reps=20, history_reps=5, log_metric_budget_s=60, seed_budget_s=180, idle_wait_s=60)  # fmt: skip
QUICK = dict(log_metric=1_000, batch_total=1_000, batch=100, runs=500, big_runs=10_000, history=10_000,
             search_reps=20, history_reps=5, log_metric_budget_s=60, seed_budget_s=18, idle_wait_s=5)  # fmt: skip
Points = list[tuple[str, float, int, int]]  # key, value, timestamp, step


# the two sides: one small adapter each ---------------------------------------------------------------------------
class Side:
    client: Any

    def log_metric(self, run_id: str, key: str, value: float, step: int) -> None:
        self.client.log_metric(run_id, key, value, step=step)

    def flush(self) -> None:
        pass

    def search(self, exp: str) -> list[float]:
        runs = self.client.search_runs([exp], FILTER, order_by=[ORDER], max_results=100)
        return [r.data.metrics["acc"] for r in runs]

    def history(self, run_id: str, key: str) -> int:
        return len(self.client.get_metric_history(run_id, key))


class ModelyardSide(Side):
    def __init__(self, tmp: Path) -> None:
        os.environ["MODELYARD_HOME"] = str(tmp / "my")
        from modelyard import Client, Metric

        self.client, self.Metric = Client(f"sqlite:///{tmp}/my.db"), Metric

    def experiment(self, name: str) -> str:
        return self.client.create_experiment(name)

    def new_run(self, exp: str) -> str:
        return self.client.create_run(exp).run_id

    def flush(self) -> None:
        self.client.flush()  # log_metric is buffered: this waits until every point is stored

    def log_metrics(self, run_id: str, points: Points) -> None:
        self.client.log_batch(
            run_id, metrics=[self.Metric(key=k, value=v, timestamp=t, step=s) for k, v, t, s in points]
        )

    def add_run(self, exp: str, params: dict, tags: dict, points: Points, end: bool) -> None:
        run_id = self.client.create_run(exp, params=params, tags=tags).run_id
        if not end:  # seeding: no end of run to store the points with
            self.log_metrics(run_id, points)
            return
        # The training-loop path: buffered log_metric, stored with the end status in one transaction.
        for key, value, ts, step in points:
            self.client.log_metric(run_id, key, value, step=step, timestamp=ts)
        self.client.set_terminated(run_id)


class MlflowSide(Side):  # MlflowClient.log_metric is synchronous: nothing to flush
    def __init__(self, tmp: Path) -> None:
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # no internet here: no background retries
        os.chdir(tmp)  # MLflow's default artifact root (./mlruns) lands in the temp folder too
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        self.client, self.Metric, self.Param = MlflowClient(f"sqlite:///{tmp}/mlflow.db"), Metric, Param
        self.artifacts = (tmp / "mlflow-artifacts").as_uri()

    def experiment(self, name: str) -> str:
        return self.client.create_experiment(name, artifact_location=f"{self.artifacts}/{name}")

    def new_run(self, exp: str) -> str:
        return self.client.create_run(exp).info.run_id

    def log_metrics(self, run_id: str, points: Points, params: dict | None = None) -> None:
        param_list = [self.Param(k, v) for k, v in (params or {}).items()]
        self.client.log_batch(
            run_id, metrics=[self.Metric(k, v, t, s) for k, v, t, s in points], params=param_list
        )

    def add_run(self, exp: str, params: dict, tags: dict, points: Points, end: bool) -> None:
        run_id = self.client.create_run(exp, tags=tags).info.run_id
        self.log_metrics(run_id, points, params)
        if end:
            self.client.set_terminated(run_id)


SIDES = {"modelyard": ModelyardSide, "mlflow": MlflowSide}


# workloads -----------------------------------------------------------------------------------------------------
def run_data(n: int):
    """n realistic runs as (params, tags, metric points): the same sequence on both sides."""
    rng = random.Random(SEED)
    for i in range(n):
        params = {
            "lr": rng.choice(["0.1", "0.01", "0.001"]),
            "batch_size": rng.choice(["32", "64", "128", "256"]),
            "optimizer": rng.choice(["adam", "sgd", "adamw"]),
            "epochs": rng.choice(["10", "20", "50"]),
            "dropout": f"{rng.uniform(0, 0.5):.2f}",
        }
        tags = {"team": rng.choice(["vision", "nlp", "tabular"]), "model": rng.choice(["cnn", "mlp", "gbm"])}
        values = [("acc", rng.random()), ("loss", rng.uniform(0, 3))] + [
            (k, rng.random()) for k in ("f1", "prec", "rec")
        ]
        yield params, tags, [(k, v, BASE_TS + i, 0) for k, v in values]


def precompile_modelyard() -> None:
    """Byte-compile Modelyard's modules, as `pip install` does for an installed package. From a source
    checkout (an editable install) with PYTHONDONTWRITEBYTECODE set, as on CI machines, Python would
    otherwise compile every module again at each start (~0.1 s of a server's startup), which the other
    side, installed by pip, never pays."""
    import compileall

    import modelyard

    compileall.compile_dir(Path(modelyard.__file__).parent, quiet=1)


def machine_busy() -> tuple[float, float]:
    """(CPU-seconds the whole machine spent busy, total CPU-seconds) since boot; zeros without /proc."""
    if not Path("/proc/stat").exists():
        return 0.0, 0.0
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz  # all but idle and iowait


def wait_idle(max_wait_s: float) -> bool:
    """Wait until the machine's CPUs are under 20% busy over half a second; False if that never happened."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        b0, t0 = machine_busy()
        time.sleep(0.5)
        b1, t1 = machine_busy()
        if b1 - b0 <= 0.2 * (t1 - t0):
            return True
    return False


def rate(once, n: int) -> dict:
    """n / seconds of one pass when it takes 2 s or more; else n / the median of 3 to 10 passes (10, or until
    they add up to 2 s)."""
    seconds = [once()]
    while seconds[0] < 2 and len(seconds) < 10 and (len(seconds) < 3 or sum(seconds) < 2):
        seconds.append(once())
    return {"n": n, "value": n / statistics.median(seconds), "seconds": seconds}


def latency(call, reps: int, warmups: int) -> dict:
    """Median milliseconds of `reps` calls after `warmups` untimed ones."""
    for _ in range(warmups):
        call()
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000)
    return {"value": statistics.median(samples), "samples_ms": samples}


def bench_log_metric(side, exp: str, n: int, budget_s: float) -> dict:
    rng = random.Random(SEED + 1)
    values = [rng.random() for _ in range(n)]

    def once(count: int) -> float:
        run_id = side.new_run(exp)
        t = time.perf_counter()
        for i in range(count):
            side.log_metric(run_id, "loss", values[i], i)
        side.flush()
        return time.perf_counter() - t

    probe = max(1, n // 10)
    probe_s = once(probe)
    if probe_s * n / probe > budget_s:
        note = f"measured on {probe:,} points ({n:,} would take ~{probe_s * n / probe:.0f} s)"
        return {"n": probe, "value": probe / probe_s, "seconds": [probe_s], "note": note}
    return rate(lambda: once(n), n)


def bench_log_batch(side, exp: str, total: int, size: int) -> dict:
    rng = random.Random(SEED + 2)
    points = [("loss", rng.random(), BASE_TS + i, i) for i in range(total)]

    def once() -> float:
        run_id = side.new_run(exp)
        t = time.perf_counter()
        for start in range(0, total, size):
            side.log_metrics(run_id, points[start : start + size])
        return time.perf_counter() - t

    return rate(once, total)


def bench_runs(side, exp: str, n: int, end: bool = True) -> dict:
    """One pass: repeating it would leave more runs in one store than in the other, and slow its searches."""
    data = list(run_data(n))
    t = time.perf_counter()
    for params, tags, points in data:
        side.add_run(exp, params, tags, points, end)
    seconds = time.perf_counter() - t
    return {"n": n, "value": n / seconds, "seconds": [seconds]}


def bench_search(side, exp: str, reps: int) -> dict:
    return {**latency(lambda: side.search(exp), reps, warmups=2), "acc": side.search(exp)}


def bench_history(side, exp: str, n: int, reps: int) -> dict:
    run_id, rng = side.new_run(exp), random.Random(SEED + 3)
    for start in range(0, n, 1_000):
        side.log_metrics(
            run_id, [("loss", rng.random(), BASE_TS + i, i) for i in range(start, min(n, start + 1_000))]
        )
    got = side.history(run_id, "loss")
    assert got == n, f"expected {n:,} points in the history, got {got:,}"
    return {"n": n, **latency(lambda: side.history(run_id, "loss"), reps, warmups=0)}


def worker(name: str, tmp: Path, sizes: dict, skip_100k: bool, out: Path) -> None:
    """One side, in its own process: every workload in turn, raw numbers to `out` as JSON."""
    side = SIDES[name](tmp)
    results: dict[str, Any] = {"busy": []}

    def step(key: str, label: str, thunk) -> None:
        print(f"  [{name}] {label} ...", flush=True)
        idle = wait_idle(sizes["idle_wait_s"])
        (busy0, _), own0, wall0 = machine_busy(), sum(os.times()[:2]), time.monotonic()
        results[key] = thunk()
        others = machine_busy()[0] - busy0 - (sum(os.times()[:2]) - own0)  # CPU-seconds of other processes
        results[key]["other_load"] = others / (time.monotonic() - wall0)  # in cores, on average
        if not idle or results[key]["other_load"] > 0.25:
            results["busy"].append(key)

    n, reps, big = sizes["runs"], sizes["search_reps"], sizes["big_runs"]
    step("log_metric", f"{sizes['log_metric']:,} x log_metric", lambda: bench_log_metric(
        side, side.experiment("log_metric"), sizes["log_metric"], sizes["log_metric_budget_s"]))  # fmt: skip
    step("log_batch", f"{sizes['batch_total']:,} points by log_batch", lambda: bench_log_batch(
        side, side.experiment("log_batch"), sizes["batch_total"], sizes["batch"]))  # fmt: skip
    exp = side.experiment("runs")
    step("create_runs", f"create {n:,} runs", lambda: bench_runs(side, exp, n))
    step("search", f"search {n:,} runs", lambda: bench_search(side, exp, reps))
    step("history", f"metric history of {sizes['history']:,} points", lambda: bench_history(
        side, side.experiment("history"), sizes["history"], sizes["history_reps"]))  # fmt: skip
    projected_s = big / results["create_runs"]["value"]
    if skip_100k:
        results["search_big"] = {"note": "skipped (--skip-100k)"}
    elif name != "modelyard" and projected_s > sizes["seed_budget_s"]:
        results["search_big"] = {"note": f"n/a (too slow to seed: ~{projected_s / 60:.0f} min)"}
    else:
        exp = side.experiment("search_big")
        print(f"  [{name}] seed {big:,} runs (create_run + log_batch; untimed) ...", flush=True)
        seeded = bench_runs(side, exp, big, end=False)
        step("search_big", f"search {big:,} runs", lambda: bench_search(side, exp, reps))
        results["search_big"]["seed_runs_per_s"] = seeded["value"]
    ours = [
        getattr(m, "__file__", None) for k, m in list(sys.modules.items()) if k.split(".")[0] == "modelyard"
    ]
    results["modules"] = sorted(filter(None, ours))  # the parent checks none of these changed meanwhile
    out.write_text(json.dumps(results))


# the parent: import times, both workers, the table -------------------------------------------------------------
IMPORTS = {
    "modelyard": {"import": "import modelyard", "import_client": "from modelyard import Client"},
    "mlflow": {"import": "import mlflow", "import_client": "from mlflow import MlflowClient"},
}
# key, label, unit, higher is better, Modelyard's target
ROWS = [
    ("import", "`import` (fresh process, best of 3)", "s", False, 0.2),
    ("import_client", "import the client class (fresh process, best of 3)", "s", False, None),
    ("log_metric", "{log_metric:,} × `log_metric` into 1 run, then flush", "/s", True, 50_000),
    ("log_batch", "{batch_total:,} points by `log_batch` of {batch:,}", "/s", True, 100_000),
    ("create_runs", "create {runs:,} runs (5 params, 5 metrics, 2 tags, end)", "/s", True, 2_000),
    ("search", "search {runs:,} runs: filter, order by, top 100", "ms", False, 20),
    ("search_big", "the same search over {big_runs:,} runs", "ms", False, 100),
    ("history", "`get_metric_history` of {history:,} points", "ms", False, 100),
]
HEADER = ["Workload", "Modelyard", "MLflow", "Modelyard faster by", "Target", "Result", "Note"]


def import_time(statement: str, cwd: Path) -> float:
    """Best of 3 fresh interpreters: seconds spent in `statement` alone."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    run = [sys.executable, "-c", code]
    return min(
        float(subprocess.run(run, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout)
        for _ in range(3)
    )


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> str:
    def proc(path: str, field: str) -> str:
        lines = Path(path).read_text().splitlines() if Path(path).exists() else []
        return next((x.split(":", 1)[1].strip() for x in lines if x.startswith(field)), "?")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ram_kib = proc("/proc/meminfo", "MemTotal").split()[0]
    ram = f"{int(ram_kib) / 2**20:.0f} GiB" if ram_kib.isdigit() else "?"
    return (
        f"{proc('/proc/cpuinfo', 'model name')}, {cores} cores, {ram} RAM, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, Modelyard {version('modelyard')}, MLflow {version('mlflow') or 'not installed'}"
    )


def revision() -> str:
    """The Modelyard source measured: git commit, the tree hash of src/ and a hash of its uncommitted changes."""
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        out = [subprocess.run([*git, *a], capture_output=True, text=True, check=True).stdout.strip()
               for a in (["rev-parse", "--short", "HEAD"], ["rev-parse", "--short", "HEAD:src"], ["diff", "HEAD", "--", "src"])]  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = f", uncommitted changes {hashlib.sha1(out[2].encode()).hexdigest()[:7]}" if out[2] else ""
    return f"{out[0]} (src/ tree {out[1]}{dirty})"


def file_hash(path: str) -> str | None:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return {"s": f"{value:.3f} s", "/s": f"{value:,.0f}/s", "ms": f"{value:.1f} ms"}[unit]


def table_rows(results: dict, sizes: dict) -> list[dict]:
    has_mlflow, rows = "mlflow" in results, []
    for key, label, unit, higher, target in ROWS:
        my, ml = results["modelyard"].get(key, {}), results.get("mlflow", {}).get(key, {})
        a, b = my.get("value"), ml.get("value")
        ratio = (a / b if higher else b / a) if a and b else None
        passed = None if target is None or a is None else (a >= target if higher else a <= target)
        same = my.get("note") == ml.get("note")
        notes = [my.get("note", "") if same else f"Modelyard {my['note']}" if my.get("note") else ""]
        notes += ["" if same or not ml.get("note") else f"MLflow {ml['note']}"]
        notes += [f"Modelyard seeded {my['seed_runs_per_s']:,.0f} runs/s" if "seed_runs_per_s" in my else ""]
        notes += [
            f"other processes busy during {side}'s turn" for side in results if key in results[side]["busy"]
        ]
        cells = [
            label.format(**sizes),
            fmt(a, unit),
            fmt(b, unit) if has_mlflow else "not installed",
            f"{ratio:,.1f}×" if ratio else "",
            "" if target is None else f"{'≥' if higher else '≤'} {fmt(target, unit)}",
            {True: "PASS", False: "MISS", None: ""}[passed],
            "; ".join(n for n in notes if n),
        ]
        rows.append({"key": key, "unit": unit, "modelyard": a, "mlflow": b, "ratio": ratio, "target": target,
                     "passed": passed, "cells": cells})  # fmt: skip
    return rows


def check_search(results: dict) -> str | None:
    """A warning unless both sides found the same runs: same count, same acc values in the same order."""
    a, b = results["modelyard"]["search"]["acc"], results["mlflow"]["search"]["acc"]
    if len(a) == len(b) and all(abs(x - y) <= 1e-12 for x, y in zip(a, b, strict=True)):
        return None
    return f"the two searches differ: Modelyard found {len(a)} runs, MLflow {len(b)} (top acc {a[:3]} vs {b[:3]})"


def markdown_head(title: str, info: dict, header: list[str], rows: list[dict]) -> list[str]:
    """How every benchmark section starts: its title, when and where it ran, and the results table."""
    return [
        title,
        "",
        f"Generated by `{info['command']}` on {info['date']}; the whole run took {info['elapsed_s'] / 60:.1f} min.",
        "",
        f"Machine: {info['machine']}. Modelyard source: commit {info['revision']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * 3 + "---|---|---|",
        *["| " + " | ".join(c.replace("|", "\\|") for c in r["cells"]) + " |" for r in rows],
        "",
    ]


def write_markdown(path: Path, rows: list[dict], info: dict) -> None:
    s = info["sizes"]
    lines = [
        *markdown_head("# Tracking benchmarks: Modelyard vs MLflow", info, HEADER, rows),
        "How it is measured ([`bench/tracking.py`](../bench/tracking.py)): each library runs in a fresh subprocess of",
        "its own, against its own fresh embedded SQLite store (MLflow: `MlflowClient` on its local `sqlite:///` store,",
        "telemetry off since this machine has no internet). Both log the same data from the same seeds; store set-up is",
        "not timed, and each workload waits until the machine is idle. Throughputs include building the metric objects;",
        "each is one pass, or the median of 3 to 10 passes adding up to 2 s when a pass is shorter. Search: median of",
        f"{s['search_reps']} calls after 2 warm-ups; metric history: median of {s['history_reps']} calls. "
        "“Faster by” is MLflow's time over Modelyard's. Creating runs: each side uses its fastest way to log a",
        "finished run — MLflow `create_run` + `log_batch` (metrics and params) + `set_terminated`; Modelyard",
        "`create_run` (with params and tags) + buffered `log_metric` + `set_terminated`, which stores the points",
        "together with the end status.",
        "A note “other processes busy” means other processes used over a quarter of a core on average during that",
        "workload (the machine is shared), which makes that side's figure pessimistic.",
        f"Search sanity check: {info['search_check']}.",
        *[f"\n**Warning:** {w}" for w in info["warnings"]],
        "",
    ]
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    tail = text[text.index("\n## ") :] if "\n## " in text else ""  # other benchmarks' sections stay
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n" + tail, encoding="utf-8")


def results_table(title: str, rows: list[dict], header: list[str] = HEADER) -> Any:
    """The side-by-side table every benchmark prints: ratios right-aligned, PASS green and MISS red."""
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(header):
        table.add_column(column, justify="right" if 1 <= i <= 3 else "left")
    for row in rows:
        style = {True: "green", False: "bold red", None: "default"}[row["passed"]]
        table.add_row(*row["cells"][:5], f"[{style}]{row['cells'][5]}[/]", row["cells"][6])
    return table


def finish(console: Any, args: Any, rows: list[dict], info: dict, results: dict, write_markdown: Any) -> None:
    """Warnings and total time on the console, then the Markdown table and the JSON results when asked for."""
    for warning in info["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"Total time: {info['elapsed_s']:.0f} s")
    if args.markdown:
        write_markdown(args.markdown, rows, info)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**info, "results": results, "rows": rows}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller sizes, for a smoke run")
    parser.add_argument("--skip-100k", action="store_true", help="skip the search over 100,000 runs")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this JSON file")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.worker:
        return worker(args.worker, args.tmp, sizes, args.skip_100k, args.out)

    from rich.console import Console

    console, started = Console(), time.perf_counter()
    if not console.is_terminal:
        console.width = 200  # a log file should keep the table's rows on one line each
    info: dict[str, Any] = {
        "command": " ".join(["python", "bench/tracking.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "revision": revision(),
        "sizes": sizes,
        "warnings": [],
    }
    console.print(f"[bold]Machine:[/] {info['machine']}; Modelyard source: {info['revision']}")
    sides = ["modelyard"] + (["mlflow"] if version("mlflow") else [])
    if len(sides) == 1:
        info["warnings"].append("MLflow is not installed in this interpreter: only Modelyard was measured.")
        console.print(f"[yellow]{info['warnings'][-1]}[/]")
    results: dict[str, dict] = {}
    spec = importlib.util.find_spec("modelyard")
    package = Path(spec.origin).parent if spec and spec.origin else None
    source_hashes = {str(f): file_hash(str(f)) for f in package.rglob("*.py")} if package else {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    try:
        for name in sides:
            print(f"  [{name}] import times ...", flush=True)
            busy = [] if wait_idle(sizes["idle_wait_s"]) else list(IMPORTS[name])
            results[name] = {"busy": busy} | {
                key: {"value": import_time(stmt, tmp)} for key, stmt in IMPORTS[name].items()
            }
        for name in sides:
            out = tmp / f"{name}.json"
            command = [sys.executable, __file__, "--worker", name, "--tmp", str(tmp), "--out", str(out)]
            subprocess.run(command + ["--quick"] * args.quick + ["--skip-100k"] * args.skip_100k, check=True)
            measured = json.loads(out.read_text())
            changed = [f for f in measured.pop("modules", []) if source_hashes.get(f) != file_hash(f)]
            results[name] |= {**measured, "busy": results[name]["busy"] + measured["busy"]}
            if changed:  # another editor changed code under measurement
                info["warnings"].append(
                    f"Modelyard source changed while it was measured: {', '.join(changed)}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["elapsed_s"] = time.perf_counter() - started
    mismatch = check_search(results) if len(sides) == 2 else None
    info["warnings"] += [mismatch] if mismatch else []
    info["search_check"] = (
        "not run (no MLflow)" if len(sides) == 1 else "FAILED, see the warning" if mismatch
        else "both sides returned the same runs (same count, same acc values in the same order)"
    )  # fmt: skip
    rows = table_rows(results, sizes)

    console.print(
        results_table(f"Tracking: Modelyard vs MLflow ({'quick' if args.quick else 'full'} sizes)", rows)
    )
    finish(console, args, rows, info, results, write_markdown)


if __name__ == "__main__":
    main()
