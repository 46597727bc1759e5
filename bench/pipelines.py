"""Pipelines benchmark: the same 10-step DAG on Modelyard, kfp.local and Metaflow local, side by side, in one run.

    python bench/pipelines.py [--quick] [--markdown docs/benchmarks.md] [--json out.json]

The DAG is small numpy work (a few ms in all), so what is measured is orchestration overhead:

    make_data → normalize → {feature_a ∥ feature_b} → join_features → project → {stats_a ∥ stats_b}
      → combine_stats → summary

Every side runs the very same step bodies (the functions below, written once to a `work.py` in each side's own
temp folder and imported by its steps) with the same parameters. Each run is a fresh Python process started by
this script and timed from its start to its exit, so interpreter start-up and imports count the same for
everyone: Modelyard `python run_my.py` (`my.run_pipeline` on the embedded store under `MODELYARD_HOME`, its
schema created untimed first, `max_parallel=2`); kfp `python run_kfp.py` (`kfp.local.SubprocessRunner(
use_venv=False)`, `enable_caching=True`, components with `install_kfp_package=False`); Metaflow
`python flow.py run` (local metadata and datastore). Per side: a cold run, a re-run with nothing changed
(Modelyard and kfp: fully cached; Metaflow has no content cache, its analogue is a bare `resume`, which clones
every task of the last run), and a run with `r` changed, which only touches the last 5 steps (Modelyard and
kfp: 5 cached, 5 run; Metaflow: a new full `run`). Every side must compute the same summary as the in-process
reference. Without kfp or Metaflow installed that side is left out, with a warning. Modelyard reads every cached
output once on a hit, to check it against its recorded SHA-256: the time those checks take inside the timed run
is measured too (a timer around `integrity.stored_digest`) and shown in the notes of the nothing-changed re-run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
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

# Tiny BLAS calls: no thread pools, here and in every process started from here (set before numpy loads).
os.environ.update(dict.fromkeys(("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"), "1"))

import numpy as np

PARAMS = {"n": 1000, "d": 10, "k": 8, "c": 3.0, "r": 5, "seed": 0}
CHANGED = {"r": 4}  # changes project and everything after it: 5 of the 10 steps
STEPS = 10
# The target: "a fully cached re-run of a 10-step pipeline costs < 1 s of overhead in total".
TARGET_CACHED_S = 1.0
FULL = dict(reps=3, idle_wait_s=60, work_reps=50, timeout_s=600)
QUICK = dict(reps=1, idle_wait_s=5, work_reps=20, timeout_s=300)


# the work: pure, deterministic numpy functions (written to each side's work.py) ------------------------------
def make_data(n=1000, d=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(loc=2.0, scale=3.0, size=(n, d))


def normalize(x):
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-12)


def feature_a(z):
    return np.tanh(z) + 0.1 * z**2


def feature_b(z, k=8, seed=0):
    rng = np.random.default_rng(seed + 1)
    w = rng.normal(size=(z.shape[1], k)) / np.sqrt(z.shape[1])
    return np.maximum(z @ w, 0.0)


def join_features(fa, fb, c=3.0):
    f = np.hstack([fa, fb])
    mu = f.mean(axis=0)
    sd = f.std(axis=0) + 1e-12
    return np.clip(f, mu - c * sd, mu + c * sd)


def project(f, r=5):
    centered = f - f.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return centered @ vt[:r].T


def stats_a(p):
    return np.vstack([np.abs(p).mean(axis=0), p.std(axis=0)])


def stats_b(p):
    return np.corrcoef(p**2, rowvar=False)


def combine_stats(sa, sb):
    return np.vstack([sa, sb])


def summary(s):
    sa, sb = s[:2], s[2:]
    off = sb[~np.eye(sb.shape[0], dtype=bool)]
    return {
        "mean_abs": float(sa[0].mean()),
        "mean_std": float(sa[1].mean()),
        "max_abs_offdiag_corr_sq": float(np.abs(off).max()),
        "checksum": float(s.sum()),
    }


WORK: list[Any] = [
    make_data,
    normalize,
    feature_a,
    feature_b,
    join_features,
    project,
    stats_a,
    stats_b,
    combine_stats,
    summary,
]


def run_inprocess(params: dict) -> dict:
    """The reference: the whole DAG in this process, no orchestrator."""
    p = {**PARAMS, **params}
    z = normalize(make_data(p["n"], p["d"], p["seed"]))
    f = join_features(feature_a(z), feature_b(z, p["k"], p["seed"]), p["c"])
    pr = project(f, p["r"])
    return summary(combine_stats(stats_a(pr), stats_b(pr)))


# each side's files, written into its own temp folder -----------------------------------------------------------
WORK_PY = "import numpy as np\n\n\n" + "\n\n".join(inspect.getsource(f) for f in WORK)

MY_PIPELINE_PY = """\
import modelyard as my
from modelyard.pipelines import Dataset

from work import combine_stats as _combine_stats, feature_a as _feature_a, feature_b as _feature_b
from work import join_features as _join_features, make_data as _make_data, normalize as _normalize
from work import project as _project, stats_a as _stats_a, stats_b as _stats_b, summary as _summary


@my.step
def make_data(n: int, d: int, seed: int) -> Dataset:
    return _make_data(n, d, seed)


@my.step
def normalize(x: Dataset) -> Dataset:
    return _normalize(x)


@my.step
def feature_a(z: Dataset) -> Dataset:
    return _feature_a(z)


@my.step
def feature_b(z: Dataset, k: int, seed: int) -> Dataset:
    return _feature_b(z, k, seed)


@my.step
def join_features(fa: Dataset, fb: Dataset, c: float) -> Dataset:
    return _join_features(fa, fb, c)


@my.step
def project(f: Dataset, r: int) -> Dataset:
    return _project(f, r)


@my.step
def stats_a(p: Dataset) -> Dataset:
    return _stats_a(p)


@my.step
def stats_b(p: Dataset) -> Dataset:
    return _stats_b(p)


@my.step
def combine_stats(sa: Dataset, sb: Dataset) -> Dataset:
    return _combine_stats(sa, sb)


@my.step
def summary(s: Dataset) -> dict:
    return _summary(s)


@my.pipeline
def bench(n: int = 1000, d: int = 10, k: int = 8, c: float = 3.0, r: int = 5, seed: int = 0):
    z = normalize(make_data(n, d, seed))
    f = join_features(feature_a(z), feature_b(z, k, seed), c)
    p = project(f, r)
    summary(combine_stats(stats_a(p), stats_b(p)))
"""

RUN_MY_PY = """\
import time
wall0, t0 = time.time(), time.perf_counter()
import json, sys
import modelyard as my
import modelyard.store.sql.store, modelyard.tracking.client  # run_pipeline imports them lazily: counted here
import my_pipeline
t1 = time.perf_counter()
if __name__ == "__main__":  # each step process (multiprocessing's forkserver) imports this script again
    from modelyard.pipelines import integrity  # the run imports it anyway

    checks = {"s": 0.0, "n": 0}
    digest = integrity.stored_digest

    def timed_digest(*args, **kwargs):  # a cache hit's check of one output against its SHA-256: its cost
        t = time.perf_counter()
        try:
            return digest(*args, **kwargs)
        finally:
            checks["s"] += time.perf_counter() - t
            checks["n"] += 1

    integrity.stored_digest = timed_digest
    run = my.run_pipeline(my_pipeline.bench, json.loads(sys.argv[1]), experiment="bench", max_parallel=2)
    t2 = time.perf_counter()
    entry = run.steps["summary"].outputs.get("output", {}) if run.ok else {}
    result = entry["value"] if "value" in entry else run.output("summary") if run.ok else None
    states = {key: record.state for key, record in run.steps.items()}
    errors = {key: record.error for key, record in run.steps.items() if record.error}
    ours = [getattr(m, "__file__", None) for k, m in list(sys.modules.items()) if k.split(".")[0] == "modelyard"]
    print(json.dumps({"wall0": wall0, "wall1": time.time(), "import_s": t1 - t0, "run_s": t2 - t1,
                      "status": run.status, "states": states, "errors": errors, "result": result,
                      "check_s": checks["s"], "checks": checks["n"], "modules": sorted(filter(None, ours))}))
"""

RUN_KFP_PY = """\
import time
wall0, t0 = time.time(), time.perf_counter()
import contextlib, io, json, logging, sys
from kfp import dsl, local
from kfp.dsl import Dataset, Input, Output

comp = dsl.component(base_image="python:3.11", install_kfp_package=False)


@comp
def make_data(work_dir: str, n: int, d: int, seed: int, out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import make_data
    with open(out.path, "wb") as f:
        np.save(f, make_data(n, d, seed))


@comp
def normalize(work_dir: str, x: Input[Dataset], out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import normalize
    with open(out.path, "wb") as f:
        np.save(f, normalize(np.load(x.path)))


@comp
def feature_a(work_dir: str, z: Input[Dataset], out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import feature_a
    with open(out.path, "wb") as f:
        np.save(f, feature_a(np.load(z.path)))


@comp
def feature_b(work_dir: str, z: Input[Dataset], k: int, seed: int, out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import feature_b
    with open(out.path, "wb") as f:
        np.save(f, feature_b(np.load(z.path), k, seed))


@comp
def join_features(work_dir: str, fa: Input[Dataset], fb: Input[Dataset], c: float, out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import join_features
    with open(out.path, "wb") as f:
        np.save(f, join_features(np.load(fa.path), np.load(fb.path), c))


@comp
def project(work_dir: str, f_in: Input[Dataset], r: int, out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import project
    with open(out.path, "wb") as f:
        np.save(f, project(np.load(f_in.path), r))


@comp
def stats_a(work_dir: str, p: Input[Dataset], out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import stats_a
    with open(out.path, "wb") as f:
        np.save(f, stats_a(np.load(p.path)))


@comp
def stats_b(work_dir: str, p: Input[Dataset], out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import stats_b
    with open(out.path, "wb") as f:
        np.save(f, stats_b(np.load(p.path)))


@comp
def combine_stats(work_dir: str, sa: Input[Dataset], sb: Input[Dataset], out: Output[Dataset]):
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import combine_stats
    with open(out.path, "wb") as f:
        np.save(f, combine_stats(np.load(sa.path), np.load(sb.path)))


@comp
def summary(work_dir: str, s: Input[Dataset]) -> dict:
    import sys; sys.path.insert(0, work_dir)
    import numpy as np
    from work import summary
    return summary(np.load(s.path))


@dsl.pipeline(name="bench-10-steps")
def bench(work_dir: str, n: int = 1000, d: int = 10, k: int = 8, c: float = 3.0, r: int = 5,
          seed: int = 0) -> dict:
    z = normalize(work_dir=work_dir, x=make_data(work_dir=work_dir, n=n, d=d, seed=seed).outputs["out"])
    fa = feature_a(work_dir=work_dir, z=z.outputs["out"])
    fb = feature_b(work_dir=work_dir, z=z.outputs["out"], k=k, seed=seed)
    f = join_features(work_dir=work_dir, fa=fa.outputs["out"], fb=fb.outputs["out"], c=c)
    p = project(work_dir=work_dir, f_in=f.outputs["out"], r=r)
    sa = stats_a(work_dir=work_dir, p=p.outputs["out"])
    sb = stats_b(work_dir=work_dir, p=p.outputs["out"])
    s = combine_stats(work_dir=work_dir, sa=sa.outputs["out"], sb=sb.outputs["out"])
    return summary(work_dir=work_dir, s=s.outputs["out"]).output


class Hits(logging.Handler):  # kfp.local logs "Task X cache hit (key=...); skipping execution." at INFO
    count = 0

    def emit(self, record):
        Hits.count += "cache hit" in record.getMessage()


work_dir = sys.argv[2]
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=work_dir + "/kfp-root",
           enable_caching=True, workspace_root=work_dir + "/kfp-workspace")
t1 = time.perf_counter()
root = logging.getLogger()
root.setLevel(logging.INFO)
root.addHandler(Hits())
sink = io.StringIO()  # kfp.local prints each task's output and coloured status lines: not shown, for everyone
with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    result = bench(work_dir=work_dir, **json.loads(sys.argv[1])).output
t2 = time.perf_counter()
print(json.dumps({"wall0": wall0, "wall1": time.time(), "import_s": t1 - t0, "run_s": t2 - t1, "cache_hits": Hits.count,
                  "result": result}))
"""

FLOW_PY = """\
import json
from metaflow import FlowSpec, Parameter, step
from work import combine_stats, feature_a, feature_b, join_features, make_data, normalize, project, stats_a, stats_b, summary


class BenchFlow(FlowSpec):
    n = Parameter("n", default={n})
    d = Parameter("d", default={d})
    k = Parameter("k", default={k})
    c = Parameter("c", default={c})
    r = Parameter("r", default={r})
    seed = Parameter("seed", default={seed})

    @step
    def start(self):  # 1 make_data
        self.x = make_data(self.n, self.d, self.seed)
        self.next(self.normalize)

    @step
    def normalize(self):
        self.z = normalize(self.x)
        self.next(self.feature_a, self.feature_b)

    @step
    def feature_a(self):
        self.fa = feature_a(self.z)
        self.next(self.join_features)

    @step
    def feature_b(self):
        self.fb = feature_b(self.z, self.k, self.seed)
        self.next(self.join_features)

    @step
    def join_features(self, inputs):
        self.f = join_features(inputs.feature_a.fa, inputs.feature_b.fb, self.c)
        self.next(self.project)

    @step
    def project(self):
        self.p = project(self.f, self.r)
        self.next(self.stats_a, self.stats_b)

    @step
    def stats_a(self):
        self.sa = stats_a(self.p)
        self.next(self.combine_stats)

    @step
    def stats_b(self):
        self.sb = stats_b(self.p)
        self.next(self.combine_stats)

    @step
    def combine_stats(self, inputs):
        self.s = combine_stats(inputs.stats_a.sa, inputs.stats_b.sb)
        self.next(self.end)

    @step
    def end(self):  # 10 summary (Metaflow's last step cannot be a join, hence the DAG's shape)
        self.summary = summary(self.s)
        print("SUMMARY_JSON " + json.dumps(self.summary))


if __name__ == "__main__":
    BenchFlow()
"""


# running the sides -----------------------------------------------------------------------------------------------
class SideFailed(Exception):
    pass


def timed(
    command: list[str], cwd: Path, env: dict[str, str], timeout_s: float
) -> tuple[float, str, float, float]:
    """Wall-clock seconds from the process's start to its exit, its output (stdout and stderr), and the Unix times
    of its start and exit."""
    t, started = time.perf_counter(), time.time()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise SideFailed(f"`{' '.join(command[1:])}` ran over {timeout_s:.0f} s") from None
    seconds, ended = time.perf_counter() - t, time.time()
    if done.returncode:
        raise SideFailed(f"`{' '.join(command[1:])}` exited {done.returncode}:\n{done.stdout[-4000:]}")
    return seconds, done.stdout, started, ended


def last_json(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise SideFailed(f"no result line in the output:\n{output[-4000:]}")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "METAFLOW_"))}
    env.pop("PYTHONPATH", None)
    return env


def run_modelyard(wd: Path, timeout_s: float, gate: Any) -> dict:
    (wd / "work.py").write_text(WORK_PY)
    (wd / "my_pipeline.py").write_text(MY_PIPELINE_PY)
    (wd / "run_my.py").write_text(RUN_MY_PY)
    env = base_env() | {"MODELYARD_HOME": str(wd / "my-home")}
    setup = "from modelyard import Client; Client().get_or_create_experiment('setup')"
    timed([sys.executable, "-c", setup], wd, env, timeout_s)  # store set-up (schema) is not timed
    out: dict[str, Any] = {}
    for phase, params in (("cold", PARAMS), ("cached", PARAMS), ("changed", {**PARAMS, **CHANGED})):
        gate(phase)
        seconds, output, started, ended = timed(
            [sys.executable, "run_my.py", json.dumps(params)], wd, env, timeout_s
        )
        got = last_json(output)
        if got["status"] != "FINISHED":
            raise SideFailed(f"Modelyard's {phase} run ended {got['status']}: {got['errors']}")
        states = list(got["states"].values())
        out[phase] = {"wall_s": seconds, "inproc_s": got["run_s"], "import_s": got["import_s"],
                      "startup_s": got["wall0"] - started, "exit_s": ended - got["wall1"],
                      "result": got["result"], "states": got["states"],
                      "cached": states.count("CACHED"), "executed": states.count("SUCCEEDED"),
                      "check_s": got["check_s"], "checks": got["checks"], "modules": got["modules"]}  # fmt: skip
    return out


def run_kfp(wd: Path, timeout_s: float, gate: Any) -> dict:
    (wd / "work.py").write_text(WORK_PY)
    (wd / "run_kfp.py").write_text(RUN_KFP_PY)
    out: dict[str, Any] = {}
    for phase, params in (("cold", PARAMS), ("cached", PARAMS), ("changed", {**PARAMS, **CHANGED})):
        gate(phase)
        seconds, output, started, ended = timed(
            [sys.executable, "run_kfp.py", json.dumps(params), str(wd)], wd, base_env(), timeout_s
        )
        got = last_json(output)
        out[phase] = {"wall_s": seconds, "inproc_s": got["run_s"], "import_s": got["import_s"],
                      "startup_s": got["wall0"] - started, "exit_s": ended - got["wall1"],
                      "result": got["result"], "cached": got["cache_hits"],
                      "executed": STEPS - got["cache_hits"]}  # fmt: skip
    return out


def run_metaflow(wd: Path, timeout_s: float, gate: Any) -> dict:
    (wd / "work.py").write_text(WORK_PY)
    (wd / "flow.py").write_text(FLOW_PY.format(**PARAMS))
    env = base_env() | {
        "METAFLOW_HOME": str(wd), "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(wd), "METAFLOW_DEFAULT_METADATA": "local",
        "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_ENVIRONMENT": "local", "USERNAME": "bench",
        "METAFLOW_USER": "bench",
    }  # fmt: skip
    common = [sys.executable, "flow.py", "--quiet", "--no-pylint"]
    changed_args = [f"--{k}={v}" for k, v in CHANGED.items()]
    out: dict[str, Any] = {}
    for phase, args in (("cold", ["run"]), ("cached", ["resume"]), ("changed", ["run", *changed_args])):
        gate(phase)
        seconds, output, _, _ = timed(common + args, wd, env, timeout_s)
        lines = [line.split("SUMMARY_JSON ", 1)[1] for line in output.splitlines() if "SUMMARY_JSON " in line]
        out[phase] = {"wall_s": seconds, "result": json.loads(lines[-1]) if lines else None,
                      "cached": output.count("Cloning previously run task"),
                      "executed": output.count("Task finished successfully")}  # fmt: skip
    return out


SIDES = {"modelyard": ("Modelyard", None, run_modelyard), "kfp": ("kfp.local", "kfp", run_kfp),
         "metaflow": ("Metaflow", "metaflow", run_metaflow)}  # fmt: skip


def warm_up(name: str, tmp: Path) -> None:
    """Untimed: import each side once, so no side pays for compiling its .pyc files or a cold file cache."""
    statement = {"modelyard": "import modelyard.pipelines, modelyard.tracking.client, modelyard.store.sql.store",
                 "kfp": "import kfp.local, kfp.dsl", "metaflow": "import metaflow"}[name]  # fmt: skip
    subprocess.run(
        [sys.executable, "-c", statement], cwd=tmp, env=base_env(), capture_output=True, check=False
    )


def work_time(reps: int) -> dict:
    """The pure work: median seconds of the 10 functions in this (warm) process, and of a fresh interpreter that
    imports numpy and runs them (the floor for any process-per-run tool)."""
    run_inprocess({})
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        run_inprocess({})
        samples.append(time.perf_counter() - t)
    code = (
        WORK_PY
        + "\n\n"
        + inspect.getsource(run_inprocess)
        + f"\n\nPARAMS = {PARAMS!r}\nrun_inprocess({{}})\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "plain.py"
        script.write_text(code)
        fresh = [timed([sys.executable, str(script)], Path(tmp), base_env(), 60)[0] for _ in range(3)]
    return {"inproc_s": statistics.median(samples), "fresh_process_s": min(fresh)}


def same(a: dict | None, b: dict | None) -> bool:
    if not a or not b or set(a) != set(b):
        return False
    return all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) for k in a)


# the table -------------------------------------------------------------------------------------------------------
HEADER = ["Workload", "Modelyard", "kfp.local (ratio)", "Metaflow (ratio)", "Target", "Result", "Note"]


def fmt_s(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"


def median_of(results: dict, side: str, phase: str, key: str) -> float | None:
    reps = results.get(side, {}).get("reps", [])
    values = [r[phase][key] for r in reps if key in r.get(phase, {})]
    return statistics.median(values) if values else None


def table_rows(results: dict, work: dict, sides: list[str]) -> list[dict]:
    peers = ["kfp", "metaflow"]
    work_s = work["inproc_s"]

    def counts(side: str, phase: str) -> str:
        reps = results.get(side, {}).get("reps", [])
        if not reps:
            return ""
        seen = {(r[phase]["cached"], r[phase]["executed"]) for r in reps}
        word = "cloned" if side == "metaflow" else "cached"
        return "/".join(f"{c} {word}, {e} run" for c, e in sorted(seen))

    changed = ", ".join(f"`{k}`" for k in CHANGED)
    per_cold, per_cached = (lambda t: (t - work_s) / STEPS), (lambda t: t / STEPS)
    # key, label, phase, value key, per-step transform, format, target
    # fmt: off
    specs: list[tuple[str, str, str, str, Any, Any, float | None]] = [
        ("cold", "cold run, fresh process (start to exit)", "cold", "wall_s", None, fmt_s, None),
        ("cached", "re-run, nothing changed, fresh process", "cached", "wall_s", None, fmt_s, TARGET_CACHED_S),
        ("changed", f"re-run with {changed} changed (last 5 steps), fresh process", "changed", "wall_s", None,
         fmt_s, None),
        ("cold_step", "overhead per step, cold run: (time − work) / 10", "cold", "wall_s", per_cold, fmt_ms, None),
        ("cached_step", "overhead per step, re-run: time / 10", "cached", "wall_s", per_cached, fmt_ms, None),
        ("cold_inproc", "cold run, in-process (after imports)", "cold", "inproc_s", None, fmt_s, None),
        ("cached_inproc", "re-run, nothing changed, in-process", "cached", "inproc_s", None, fmt_s,
         TARGET_CACHED_S),
        ("changed_inproc", f"re-run with {changed} changed, in-process", "changed", "inproc_s", None, fmt_s,
         None),
    ]
    # fmt: on
    rows = []
    for key, label, phase, value_key, per_step, fmt, target in specs:
        values: dict[str, float | None] = {}
        for side in ("modelyard", *peers):
            v = median_of(results, side, phase, value_key)
            values[side] = per_step(v) if v is not None and per_step else v
        my = values["modelyard"]
        cells = [label, fmt(my)]
        for peer in peers:
            v = values[peer]
            if peer not in sides:
                cells.append(results.get(peer, {}).get("skipped", "not installed"))
            elif v is None:
                cells.append("n/a")
            else:
                cells.append(f"{fmt(v)} ({v / my:,.1f}×)" if my and my > 0 else fmt(v))
        passed = None if target is None or my is None else my < target
        notes = []
        if key in ("cached", "changed"):
            notes.append("; ".join(f"{SIDES[s][0]} {counts(s, phase)}" for s in sides if counts(s, phase)))
        if key in ("cold", "cached"):
            parts = [(w, median_of(results, "modelyard", phase, k)) for w, k in
                     (("start-up", "startup_s"), ("imports", "import_s"), ("pipeline", "inproc_s"), ("exit", "exit_s"))]  # fmt: skip
            if all(v is not None for _, v in parts):
                notes.append("Modelyard: " + ", ".join(f"{w} {fmt_s(v)}" for w, v in parts))
        if key == "cached":
            check_s = median_of(results, "modelyard", phase, "check_s")
            checks = median_of(results, "modelyard", phase, "checks")
            if check_s is not None and checks:
                notes.append(
                    f"Modelyard's SHA-256 checks of the {checks:.0f} cached outputs: {fmt_ms(check_s)}"
                )
        if key == "cached" and "metaflow" in sides:
            notes.append("Metaflow: bare `resume`")
        if key == "changed" and "metaflow" in sides:
            notes.append("Metaflow: a new `run` (no cache)")
        if key == "cold_inproc":
            imports = [
                f"{SIDES[s][0]} {fmt_s(median_of(results, s, 'cold', 'import_s'))}"
                for s in sides
                if s != "metaflow"
            ]
            notes.append("imports and definitions: " + ", ".join(imports))
        if key.endswith("inproc") and "metaflow" in sides:
            notes.append("Metaflow is a CLI: n/a")
        shown = [s for s in sides if not (key.endswith("inproc") and s == "metaflow")]
        busy = [SIDES[s][0] for s in shown if phase in results[s].get("busy", [])]
        if busy:
            notes.append(f"machine not idle before {', '.join(busy)}'s run")
        cells += [f"< {fmt_s(target)}" if target else "", {True: "PASS", False: "MISS", None: ""}[passed],
                  "; ".join(n for n in notes if n)]  # fmt: skip
        rows.append({"key": key, "values": values, "target": target, "passed": passed, "cells": cells})
    return rows


SECTION = "## Pipelines benchmarks"


def write_markdown(path: Path, rows: list[dict], info: dict) -> None:
    """Replace (or append at the end) the `## Pipelines benchmarks` section of `path`; the rest stays as it is."""
    import tracking  # bench/tracking.py: the section head all benchmarks share

    s, w = info["sizes"], info["work"]
    lines = [
        *tracking.markdown_head(f"{SECTION}: Modelyard vs kfp.local vs Metaflow", info, HEADER, rows),
        "How it is measured ([`bench/pipelines.py`](../bench/pipelines.py)): the same 10-step DAG of small numpy",
        "work — `make_data → normalize → {feature_a ∥ feature_b} → join_features → project → {stats_a ∥ stats_b} →",
        "combine_stats → summary`, n = 1,000 × d = 10 — on each tool, every step calling the very same functions",
        f"(together {w['inproc_s'] * 1000:.1f} ms in one warm process; a fresh `python` that imports numpy and runs",
        f"them takes {w['fresh_process_s']:.3f} s). Each run is a fresh Python process timed from start to exit, so",
        "start-up and imports count for everyone: Modelyard `my.run_pipeline(bench, params, max_parallel=2)` on the",
        "embedded store (`MODELYARD_HOME` in a temp folder, its schema created untimed beforehand; each step in its",
        "own process forked from a fork server that has Modelyard and numpy imported; the driver script calls it",
        'under `if __name__ == "__main__":`, which multiprocessing\'s forkserver needs);',
        "kfp `kfp.local.init(runner=SubprocessRunner(use_venv=False), enable_caching=True)` with",
        "`install_kfp_package=False` components passing `.npy` files (kfp.local runs tasks one after the other);",
        "Metaflow `python flow.py run` with local metadata and datastore (branches run in parallel). Per tool, in a",
        "fresh temp folder: a cold run, a re-run with nothing changed, and a run with `r` changed, which affects only",
        "`project` and the 4 steps after it. Modelyard and kfp reuse cached steps (Modelyard keys them on code",
        "fingerprint + input content; kfp.local ≥ 2.17 on the component command + arguments, including artifact",
        "paths); Metaflow has no step cache: its nothing-changed re-run is a bare `resume` (clones every task of the",
        "last run) and its changed-parameter run is a new full `run`. The in-process rows time only the pipeline",
        "call inside the same processes, after imports and definitions (Modelyard's imports include SQLAlchemy and",
        "its SQL store, which `run_pipeline` would load lazily); the Modelyard notes split its fresh-process time",
        "into interpreter start-up, imports, the pipeline call and interpreter exit; on a cache hit Modelyard reads",
        "each cached output once to check it against its recorded SHA-256, and the re-run's note gives the time those",
        "checks took inside the pipeline call. Per-step overhead: (time − the",
        f"pure work time) / 10. {s['reps']} repetition(s) per tool, interleaved, median; each run waits for an idle",
        "machine first (a note says when it never came). BLAS thread pools pinned to 1 thread everywhere.",
        "Ratios: the peer's time over Modelyard's (> 1: Modelyard faster). Result check:",
        f"{info['result_check']}.",
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
    parser.add_argument("--quick", action="store_true", help="one repetition per tool, short idle waits")
    parser.add_argument(
        "--only", choices=list(SIDES)[1:], action="append", help="peers to run (default: all)"
    )
    parser.add_argument(
        "--markdown", type=Path, help="write the `## Pipelines benchmarks` section into this file"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this JSON file")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL

    from rich.console import Console

    import tracking  # bench/tracking.py: machine description, idle waits, the table, Markdown and JSON output
    from tracking import machine, revision, version, wait_idle

    console, started = Console(), time.perf_counter()
    if not console.is_terminal:
        console.width = 200  # a log file should keep the table's rows on one line each
    info: dict[str, Any] = {
        "command": " ".join(["python", "bench/pipelines.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine().split(", MLflow")[0]
        + f", numpy {version('numpy')}, kfp {version('kfp') or 'not installed'}, Metaflow {version('metaflow') or 'not installed'}",
        "revision": revision(),
        "sizes": sizes,
        "params": PARAMS,
        "changed": CHANGED,
        "warnings": [],
    }
    console.print(f"[bold]Machine:[/] {info['machine']}; Modelyard source: {info['revision']}")
    results: dict[str, dict] = {}
    sides = ["modelyard"]
    for name in ("kfp", "metaflow"):
        package = SIDES[name][1]
        if args.only and name not in args.only:
            results[name] = {"skipped": "not run (--only)"}
        elif not version(str(package)):
            results[name] = {"skipped": "not installed"}
            info["warnings"].append(
                f"{package} is not installed in this interpreter: {SIDES[name][0]} was left out."
            )
        else:
            sides.append(name)
    package_dir = Path(__file__).resolve().parent.parent / "src" / "modelyard"
    source_hashes = {str(f): tracking.file_hash(str(f)) for f in package_dir.rglob("*.py")}
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    try:
        print("  [work] the 10 functions without an orchestrator ...", flush=True)
        info["work"] = work = work_time(sizes["work_reps"])
        reference = {"default": run_inprocess({}), "changed": run_inprocess(CHANGED)}
        for name in sides:
            warm_up(name, tmp)
        for rep in range(sizes["reps"]):
            for name in sides:  # interleaved, so a slow spell of the shared machine hits every side
                label, _, run = SIDES[name]
                print(
                    f"  [{name}] repetition {rep + 1}/{sizes['reps']}: cold run, re-run, changed `r` ...",
                    flush=True,
                )
                side = results.setdefault(name, {"reps": [], "busy": []})
                wd = tmp / f"{name}-{rep}"
                wd.mkdir()

                def gate(phase: str, side: dict = side) -> None:  # each run starts on an idle machine
                    if not wait_idle(sizes["idle_wait_s"]) and phase not in side["busy"]:
                        side["busy"].append(phase)

                try:
                    measured = run(wd, sizes["timeout_s"], gate)
                except SideFailed as exc:
                    side["error"] = str(exc)
                    info["warnings"].append(f"{label} failed: {exc}")
                    console.print(f"[red]{label} failed:[/] {exc}")
                    continue
                finally:
                    shutil.rmtree(wd, ignore_errors=True)
                side["reps"].append(measured)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = {
        f
        for rep in results.get("modelyard", {}).get("reps", [])
        for r in rep.values()
        for f in r.pop("modules", [])
    }
    changed_files = sorted(f for f in loaded if source_hashes.get(f) != tracking.file_hash(f))
    if changed_files:  # another editor changed code under measurement
        info["warnings"].append(f"Modelyard source changed while it was measured: {', '.join(changed_files)}")
    info["elapsed_s"] = time.perf_counter() - started

    # checks: every side computed the reference summary; the caches did what they should
    problems, checked = [], []
    for name in sides:
        for i, rep in enumerate(results[name].get("reps", [])):
            for phase in ("cold", "cached", "changed"):
                got = rep[phase]["result"]
                if got is None and name == "metaflow" and phase == "cached":
                    continue  # a resume that clones every task runs no step: nothing printed
                want = reference["changed" if phase == "changed" else "default"]
                if not same(got, want):
                    problems.append(
                        f"{SIDES[name][0]} {phase} run (repetition {i + 1}) computed {got}, expected {want}"
                    )
                else:
                    checked.append(name)
    if any(results[s].get("reps") for s in sides):
        for rep in results["modelyard"].get("reps", []):
            if rep["cached"]["cached"] != STEPS:
                problems.append(f"Modelyard's re-run with nothing changed reused only {rep['cached']['cached']} of "
                                f"{STEPS} steps: {rep['cached']['states']}")  # fmt: skip
            if rep["changed"]["cached"] != 5:
                problems.append(f"Modelyard's re-run with {CHANGED} reused {rep['changed']['cached']} steps, "
                                f"expected 5: {rep['changed']['states']}")  # fmt: skip
        for rep in results.get("kfp", {}).get("reps", []):
            if rep["cached"]["cached"] != STEPS:
                problems.append(
                    f"kfp.local's re-run hit its cache for {rep['cached']['cached']} of {STEPS} steps"
                )
    info["warnings"] += problems
    sides_checked = sorted(set(checked), key=list(SIDES).index)
    info["result_check"] = (
        "FAILED, see the warnings" if problems else
        f"{', '.join(SIDES[s][0] for s in sides_checked)} all computed the reference summary "
        f"(checksum {reference['default']['checksum']:.6f}; with r = {CHANGED['r']}: {reference['changed']['checksum']:.6f})"
    )  # fmt: skip
    results["work"] = work
    results["reference"] = reference
    rows = table_rows(results, work, sides)

    console.print(
        tracking.results_table(
            f"Pipelines, 10 steps: Modelyard vs kfp.local vs Metaflow ({'quick' if args.quick else 'full'})",
            rows,
            HEADER,
        )
    )
    console.print(
        f"Pure work: {work['inproc_s'] * 1000:.1f} ms in-process; a fresh python running it: "
        f"{work['fresh_process_s']:.3f} s. Result check: {info['result_check']}."
    )
    tracking.finish(console, args, rows, info, results, write_markdown)


if __name__ == "__main__":
    main()
