"""Registry benchmark: Modelyard's model registry and MLflow's side by side, on the same workloads, in one run.

    python bench/registry.py [--quick] [--markdown docs/benchmarks.md] [--json out.json]

Run it with an interpreter that has both installed (`.venv-bench`, see bench/README.md); without MLflow only
Modelyard is measured. Each library runs in fresh subprocesses of its own, so neither sees the other's imports:
one on its embedded store in one temp folder (`log_model` of the same small scikit-learn model inside a run;
then creating 100 versions of one registered model, getting a version by alias and searching the 100 versions
on a fresh `sqlite:///` registry), and one as the HTTP client of its own server (`modelyard server` /
`mlflow server`, `--workers 1`, on a fresh SQLite database of its own: the same 100 versions created through
that client, then the same alias and search calls). Store set-up is never timed, and each workload waits for the
machine to be idle first: `mlflow server` keeps using CPU for 15-25 s after /health answers (DESIGN.md, "Known
pitfalls").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tracking  # bench/tracking.py: machine description, idle waits, latency medians, source hashes
from server import ENV, start_server, stop_server, tree_cpu  # bench/server.py: starting and stopping servers
from tracking import latency, machine, machine_busy, revision, version, wait_idle

SEED = 20240601
MODEL, ALIAS, SOURCE, ALIASED = "bench", "champion", "s3://b/m", 50  # the alias points at version 50
FILTER = f"name = '{MODEL}'"
# log_model_reps calls of log_model (each in a new run); `versions` versions created one by one (each call
# timed), which are then searched; alias_reps and search_reps timed calls after 2 warm-ups each.
FULL = dict(log_model_reps=7, versions=100, alias_reps=50, search_reps=20, idle_wait_s=60, settle_max_s=90)
QUICK = dict(log_model_reps=3, versions=100, alias_reps=20, search_reps=10, idle_wait_s=5, settle_max_s=60)


class NotAvailable(Exception):
    """This side cannot run a workload (e.g. modelyard.models is not there yet)."""


def training_data():
    """The same small, fixed dataset and fitted model on both sides."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=200, n_features=8, n_informative=5, random_state=0)
    return LogisticRegression(max_iter=1000).fit(X, y), X


# the two sides: one small adapter each -------------------------------------------------------------------------
class ModelyardSide:
    def __init__(self, tmp: Path, home: str) -> None:
        for key in ("MODELYARD_TRACKING_URI", "MODELYARD_ARTIFACT_URI"):  # the embedded store under HOME
            os.environ.pop(key, None)
        os.environ["MODELYARD_HOME"] = str(tmp / home)
        self.tmp = tmp

    def prepare_log_model(self) -> None:
        try:
            import modelyard
            import modelyard.models as models
        except Exception as exc:  # not there yet, or mid-edit by another developer
            raise NotAvailable(f"import modelyard.models failed: {type(exc).__name__}: {exc}") from exc
        if not hasattr(models, "log_model"):
            raise NotAvailable("modelyard.models has no log_model")
        self.my, self.models = modelyard, models

    def log_model(self, model: Any, X: Any) -> tuple[float, float, str]:
        """(seconds in log_model, seconds of the whole run block, the model's URI)."""
        t0 = time.perf_counter()
        with self.my.start_run():
            t = time.perf_counter()
            info = self.models.log_model(model, "model", input_example=X[:5])
            seconds = time.perf_counter() - t
        return seconds, time.perf_counter() - t0, info.model_uri

    def predict(self, uri: str, X: Any) -> list:
        return [int(v) for v in self.models.load_predictor(uri, trusted=True).predict(X)]

    def connect(self, uri: str) -> None:
        from modelyard.registry import RegistryClient

        self.client = RegistryClient(uri)

    def create_model(self) -> None:
        self.client.create_registered_model(MODEL)

    def create_version(self) -> int:
        return int(self.client.register_model(SOURCE, MODEL).version)

    def set_alias(self) -> None:
        self.client.set_alias(MODEL, ALIAS, ALIASED)

    def by_alias(self) -> int:
        return int(self.client.get_version_by_alias(MODEL, ALIAS).version)

    def search(self) -> list[int]:
        return sorted(int(v.version) for v in self.client.search_model_versions(FILTER))


class MlflowSide(ModelyardSide):
    def __init__(self, tmp: Path, home: str) -> None:
        os.environ.update(ENV)  # telemetry off: no internet here, no background retries
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            os.environ.pop(key, None)
        os.chdir(tmp)  # anything MLflow writes to ./mlruns lands in the temp folder too
        self.tmp = tmp

    def prepare_log_model(self) -> None:
        import mlflow
        import mlflow.sklearn

        mlflow.set_tracking_uri(f"sqlite:///{self.tmp}/mlflow.db")
        artifacts = (self.tmp / "mlflow-artifacts").as_uri()
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("log_model", artifact_location=artifacts)
        )
        self.mlflow = mlflow

    def log_model(self, model: Any, X: Any) -> tuple[float, float, str]:
        t0 = time.perf_counter()
        with self.mlflow.start_run():
            t = time.perf_counter()
            info = self.mlflow.sklearn.log_model(model, name="model", input_example=X[:5])
            seconds = time.perf_counter() - t
        return seconds, time.perf_counter() - t0, info.model_uri

    def predict(self, uri: str, X: Any) -> list:
        return [int(v) for v in self.mlflow.pyfunc.load_model(uri).predict(X)]

    def connect(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(uri)

    def create_model(self) -> None:
        self.client.create_registered_model(MODEL)

    def create_version(self) -> int:
        return int(self.client.create_model_version(MODEL, SOURCE).version)

    def set_alias(self) -> None:
        self.client.set_registered_model_alias(MODEL, ALIAS, ALIASED)

    def by_alias(self) -> int:
        return int(self.client.get_model_version_by_alias(MODEL, ALIAS).version)


SIDES = {"modelyard": ModelyardSide, "mlflow": MlflowSide}


# workloads -----------------------------------------------------------------------------------------------------
def bench_log_model(side: ModelyardSide, reps: int) -> dict:
    """`reps` calls, each in a new run, all timed (the first one is in the note: it pays for lazy imports)."""
    try:
        side.prepare_log_model()
        model, X = training_data()
    except NotAvailable as exc:
        return {"note": "n/a (not available)", "error": str(exc)}
    samples, blocks, uri = [], [], ""
    for _ in range(reps):
        seconds, block, uri = side.log_model(model, X)
        samples.append(seconds)
        blocks.append(block)
    got, want = side.predict(uri, X[:20]), [int(v) for v in model.predict(X[:20])]
    return {
        "value": statistics.median(samples),
        "samples_s": samples,
        "run_block_s": blocks,
        "uri": uri,
        "reload_check": got == want,
        "note": f"first call {samples[0]:.3f} s; with start/end of run {statistics.median(blocks):.3f} s",
    }


def bench_create(side: ModelyardSide, n: int) -> dict:
    """n versions of the (already created) model, one call each, each call timed."""
    samples, versions = [], []
    for _ in range(n):
        t = time.perf_counter()
        versions.append(side.create_version())
        samples.append((time.perf_counter() - t) * 1000)
    assert versions == list(range(1, n + 1)), f"expected versions 1..{n}, got {versions[:5]}..."
    return {"value": statistics.median(samples), "samples_ms": samples}


def bench_alias(side: ModelyardSide, reps: int) -> dict:
    side.set_alias()  # untimed
    assert side.by_alias() == ALIASED
    return latency(side.by_alias, reps, warmups=2)


def bench_search(side: ModelyardSide, n: int, reps: int) -> dict:
    found = side.search()
    assert found == list(range(1, n + 1)), f"search found {len(found)} versions, expected {n}"
    return {**latency(side.search, reps, warmups=2), "found": len(found)}


def worker(name: str, tmp: Path, url: str | None, server_pid: int | None, sizes: dict, out: Path) -> None:
    """One side, in its own process: on the embedded store (url None) or over HTTP; raw numbers to `out`."""
    side = SIDES[name](tmp, "my-home" if url is None else "my-client")
    results: dict[str, Any] = {"busy": []}
    suffix = "" if url is None else "_http"

    def step(key: str, label: str, thunk) -> None:
        print(f"  [{name}] {label} ...", flush=True)
        idle = wait_idle(sizes["idle_wait_s"])
        # own CPU with the children it waited for (MLflow's log_model runs Python subprocesses)
        wall0, busy0, own0 = time.monotonic(), machine_busy()[0], sum(os.times()[:4])
        srv0 = tree_cpu(server_pid) if server_pid else 0.0
        results[key] = thunk()
        srv = (tree_cpu(server_pid) if server_pid else 0.0) - srv0
        others = machine_busy()[0] - busy0 - (sum(os.times()[:4]) - own0) - srv
        results[key] |= {"server_cpu_s": srv, "other_load": others / (time.monotonic() - wall0)}
        if not idle or results[key]["other_load"] > 0.25:
            results["busy"].append(key)

    where = "SQLite" if url is None else "HTTP"
    if url is None:
        step("log_model", "log_model", lambda: bench_log_model(side, sizes["log_model_reps"]))
    side.connect(url or f"sqlite:///{tmp}/{name}-registry.db")
    side.create_model()  # untimed: creates the schema (SQLite) and opens the connection
    n = sizes["versions"]
    step("create" + suffix, f"create {n} versions ({where})", lambda: bench_create(side, n))
    step(
        "alias" + suffix, f"get a version by alias ({where})", lambda: bench_alias(side, sizes["alias_reps"])
    )
    step(
        "search" + suffix,
        f"search {n} versions ({where})",
        lambda: bench_search(side, n, sizes["search_reps"]),
    )
    ours = [
        getattr(m, "__file__", None) for k, m in list(sys.modules.items()) if k.split(".")[0] == "modelyard"
    ]
    results["modules"] = sorted(filter(None, ours))  # the parent checks none of these changed meanwhile
    out.write_text(json.dumps(results))


# the parent: both sides' workers and servers, the table --------------------------------------------------------
# key, label, unit, targets: ("ratio", x) = x times faster than MLflow, ("abs", v) = Modelyard's own value
ROWS = [
    ("log_model", "`log_model` of a small scikit-learn model with an input example, embedded store", "s",
     [("abs", 0.2), ("ratio", 1)]),
    ("create", "create a model version, SQLite", "ms", [("ratio", 1)]),
    ("alias", "get a version by alias, SQLite", "ms", [("ratio", 1)]),
    ("search", "search the {versions} versions of one model, SQLite", "ms", [("ratio", 1)]),
    ("create_http", "create a model version over HTTP", "ms", [("ratio", 1)]),
    ("alias_http", "get a version by alias over HTTP", "ms", [("ratio", 1)]),
    ("search_http", "search the {versions} versions of one model over HTTP", "ms", [("ratio", 1)]),
]  # fmt: skip
HEADER = ["Workload", "Modelyard", "MLflow", "Ratio", "Target", "Result", "Note"]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def table_rows(results: dict, sizes: dict) -> list[dict]:
    rows = []
    for key, label, unit, targets in ROWS:
        my, ml = results["modelyard"].get(key, {}), results.get("mlflow", {}).get(key, {})
        a, b = my.get("value"), ml.get("value")
        ratio = b / a if a and b else None
        checks = [a <= goal if kind == "abs" else ratio >= goal for kind, goal in targets
                  if (a if kind == "abs" else ratio) is not None]  # fmt: skip
        passed = None if len(checks) < len(targets) else all(checks)
        notes = [f"{side} {r['note']}" for side, r in (("Modelyard", my), ("MLflow", ml)) if r.get("note")]
        notes += [f"other processes busy during {s}'s turn" for s in results if key in results[s]["busy"]]
        cells = [
            label.format(**sizes),
            "n/a (not available)" if a is None and my.get("note") == "n/a (not available)" else fmt(a, unit),
            fmt(b, unit) if "mlflow" in results else "not installed",
            f"{ratio:,.1f}×" if ratio else "",
            " and ".join(f"≥ {g}× MLflow" if k == "ratio" else f"≤ {fmt(g, unit)}" for k, g in targets),
            {True: "PASS", False: "MISS", None: ""}[passed],
            "; ".join(n for n in notes if n and not n.endswith("n/a (not available)")),
        ]
        rows.append({"key": key, "unit": unit, "modelyard": a, "mlflow": b, "ratio": ratio, "targets": targets,
                     "passed": passed, "cells": cells})  # fmt: skip
    return rows


SECTION = "## Registry benchmarks"


def write_markdown(path: Path, rows: list[dict], info: dict) -> None:
    """Replace (or append at the end) the `## Registry benchmarks` section of `path`; the rest stays as it is."""
    s = info["sizes"]
    lines = [
        *tracking.markdown_head(f"{SECTION}: Modelyard vs MLflow model registry", info, HEADER, rows),
        "How it is measured ([`bench/registry.py`](../bench/registry.py)): each library runs in fresh subprocesses",
        "of its own, so neither sees the other's imports, and each workload waits until the machine is idle. Both",
        "log the same `LogisticRegression` fitted on the same fixed 200 × 8 dataset (`make_classification`,",
        '`random_state=0`), with `X[:5]` as input example: Modelyard `modelyard.models.log_model(model, "model",',
        "input_example=X[:5])` inside `my.start_run()` on the embedded store (`MODELYARD_HOME` in a temp folder);",
        'MLflow\'s default `mlflow.sklearn.log_model(model, name="model", input_example=X[:5])` inside',
        "`mlflow.start_run()`, tracking URI `sqlite:///…/mlflow.db` and a local artifact folder. Each of the",
        f"{s['log_model_reps']} calls is in a new run and timed alone (median; the note gives the first call, which",
        "pays for lazy imports, and the median with the run's start and end); each side then loads its last model",
        f"back and checks its predictions ({info['reload_check']}). Registry: on a fresh `sqlite:///` database",
        "(Modelyard `RegistryClient(uri)`, MLflow `MlflowClient(uri)`), the registered model is created untimed,",
        f'then {s["versions"]} versions are created one call at a time (Modelyard `register_model("{SOURCE}",',
        f'"{MODEL}")`, MLflow `create_model_version("{MODEL}", "{SOURCE}")`; median of the {s["versions"]}',
        f"calls); the alias `{ALIAS}` is set on version {ALIASED} untimed, then `get_version_by_alias` /",
        f"`get_model_version_by_alias` (median of {s['alias_reps']} calls after 2 warm-ups) and",
        f'`search_model_versions("{FILTER}")`, which must return all {s["versions"]} versions (median of',
        f"{s['search_reps']} calls after 2 warm-ups). Over HTTP: the same through each side's own server",
        "(`modelyard server` / `mlflow server --workers 1`, bound to 127.0.0.1, on a fresh SQLite database of its",
        "own, telemetry off), with the versions created through the same HTTP client; the client waits until the",
        "server's process tree is idle after `/health` answers and then for an idle machine. Ratio: MLflow's time",
        "over Modelyard's. A note “other processes busy” means that processes other than the client and the",
        "server used over a quarter of a core during that workload (the machine is shared), which makes that",
        "side's figure pessimistic.",
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


def run_worker(name: str, tmp: Path, quick: bool, extra: list[str]) -> dict:
    """One side's worker process; its stderr (library logs and warnings) goes to a log shown on failure."""
    out, log = tmp / f"{name}-{len(extra)}.json", tmp / f"{name}-worker.log"
    command = [sys.executable, __file__, "--worker", name, "--tmp", str(tmp), "--out", str(out), *extra]
    with log.open("ab") as stderr:
        done = subprocess.run(command + ["--quick"] * quick, stderr=stderr, check=False)
    if done.returncode:
        sys.exit(
            f"the {name} worker failed (exit {done.returncode}):\n{log.read_text(errors='replace')[-3000:]}"
        )
    return json.loads(out.read_text())


def measure(name: str, tmp: Path, sizes: dict, quick: bool) -> dict:
    """One side: the embedded-store worker, then its server and the HTTP worker."""
    results = run_worker(name, tmp, quick, [])
    http = tmp / "http"
    http.mkdir(exist_ok=True)
    print(f"  [{name}] start its server ...", flush=True)
    wait_idle(sizes["idle_wait_s"])
    proc, url, start = start_server(name, http, sizes["settle_max_s"])
    try:
        measured = run_worker(name, http, quick, ["--url", url, "--server-pid", str(proc.pid)])
    finally:
        stop = stop_server(proc)
    if start["idle_s"] is None:
        for key in ("create_http", "alias_http", "search_http"):
            measured[key]["note"] = f"server not idle {sizes['settle_max_s']} s after start"
    return results | measured | {"busy": results["busy"] + measured["busy"], "server": start | stop,
                                 "modules": results["modules"] + measured["modules"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter idle waits")
    parser.add_argument(
        "--markdown", type=Path, help="write the `## Registry benchmarks` section into this file"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this JSON file")
    for hidden in ("--worker", "--tmp", "--out", "--url", "--server-pid"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.worker:
        pid = int(args.server_pid) if args.server_pid else None
        return worker(args.worker, Path(args.tmp), args.url, pid, sizes, Path(args.out))

    from rich.console import Console

    console, started = Console(), time.perf_counter()
    if not console.is_terminal:
        console.width = 200  # a log file should keep the table's rows on one line each
    info: dict[str, Any] = {
        "command": " ".join(["python", "bench/registry.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{machine()}, scikit-learn {version('scikit-learn')}, uvicorn {version('uvicorn')}",
        "revision": revision(),
        "sizes": sizes,
        "warnings": [],
    }
    console.print(f"[bold]Machine:[/] {info['machine']}; Modelyard source: {info['revision']}")
    sides = ["modelyard"] + (["mlflow"] if version("mlflow") else [])
    if len(sides) == 1:
        info["warnings"].append("MLflow is not installed in this interpreter: only Modelyard was measured.")
        console.print(f"[yellow]{info['warnings'][-1]}[/]")
    package = Path(__file__).resolve().parent.parent / "src" / "modelyard"
    source_hashes = {str(f): tracking.file_hash(str(f)) for f in package.rglob("*.py")}
    results: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    try:
        for name in sides:
            results[name] = measure(name, tmp, sizes, args.quick)
            changed = sorted(
                {f for f in results[name].pop("modules") if source_hashes.get(f) != tracking.file_hash(f)}
            )
            if changed:  # another editor changed code under measurement
                info["warnings"].append(
                    f"Modelyard source changed while it was measured: {', '.join(changed)}"
                )
            if not results[name]["server"]["clean_stop"]:
                info["warnings"].append(f"{name} server's process group had to be signalled to stop.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["elapsed_s"] = time.perf_counter() - started
    checks = {name: results[name]["log_model"].get("reload_check") for name in sides}
    info["reload_check"] = "; ".join(
        f"{name}: {'same predictions' if ok else 'not run' if ok is None else 'DIFFERENT predictions'}"
        for name, ok in checks.items()
    )
    if any(ok is False for ok in checks.values()):
        info["warnings"].append(f"a reloaded model predicted differently: {info['reload_check']}")
    rows = table_rows(results, sizes)

    console.print(
        tracking.results_table(
            f"Registry: Modelyard vs MLflow ({'quick' if args.quick else 'full'} sizes)", rows, HEADER
        )
    )
    tracking.finish(console, args, rows, info, results, write_markdown)


if __name__ == "__main__":
    main()
