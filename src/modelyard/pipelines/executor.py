"""Executors run one step attempt somewhere and report how it went; the runner decides what runs when.

`LocalExecutor` starts each attempt as its own process (`python -m modelyard.pipelines.entrypoint`), so a
step that crashes, leaks or runs out of memory takes down only itself. A Ray executor runs the same entry
point as Ray tasks (see `ray_executor`).
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.pipelines.dsl import StepOptions


@dataclass
class Job:
    """One attempt of one step instance."""

    key: str  # instance key, e.g. "train[1]"
    task: dict[str, Any]  # the entry point's task (see entrypoint.run_task)
    options: StepOptions
    log_path: Path  # where the attempt's stdout and stderr go (appended)
    env: dict[str, str] = field(default_factory=dict)


class Executor(abc.ABC):
    """Starts attempts, reports finished ones, cancels running ones."""

    max_parallel: int
    name: str

    @abc.abstractmethod
    def submit(self, job: Job) -> Any:
        """Start `job`; returns a handle."""

    @abc.abstractmethod
    def poll(self, handle: Any) -> dict[str, Any] | None:
        """The outcome ({"ok": bool, "outputs" | "error": ...}) once finished, else None. Enforces timeouts."""

    @abc.abstractmethod
    def cancel(self, handle: Any) -> None:
        """Stop a running attempt (its outcome becomes "cancelled")."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the executor holds."""

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """A step will be submitted soon: get ready (start workers, connect) in the background."""


def import_paths() -> list[str]:
    """This process's import path as folders (the current folder spelled out), without repeats."""
    return list(dict.fromkeys(p or os.getcwd() for p in sys.path if p == "" or Path(p).is_dir()))


def child_env(job: Job) -> dict[str, str]:
    """The step process's environment: ours, the step's env, and our import path (so the step's module
    imports the same way it did here)."""
    env = dict(os.environ)
    env.update(job.env)
    env.update(job.options.env)
    env["PYTHONPATH"] = os.pathsep.join(import_paths())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def failed_outcome(returncode: int | None, result_path: Path) -> dict[str, Any]:
    """The outcome of a step process: its result file, or why there is none."""
    if result_path.exists():
        try:
            return dict(json.loads(result_path.read_text()))
        except ValueError:
            pass
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = " (out of memory?)" if returncode == -signal.SIGKILL else ""
        return {"ok": False, "error": f"the step's process was killed by {name}{hint}"}
    return {"ok": False, "error": f"the step's process exited with code {returncode} without a result"}


# Modules every step needs, imported once in the fork server so each step process starts in milliseconds.
_PRELOAD = [
    "modelyard.pipelines.entrypoint",
    "modelyard.tracking.client",
    "modelyard.store.sql.store",
    "numpy",
]
_context: Any = None


def _fork_context(preload: Sequence[str] = ()) -> Any:
    """The fork server's context; `preload` adds modules to import in it if it has not started yet."""
    global _context
    if _context is None:
        import multiprocessing

        _context = multiprocessing.get_context("forkserver")
    _PRELOAD.extend(m for m in preload if m not in _PRELOAD)
    _context.set_forkserver_preload(_PRELOAD)
    return _context


def _start_fork_server(preload: Sequence[str]) -> None:
    from multiprocessing import forkserver

    _fork_context(preload)
    with contextlib.suppress(Exception), _main_not_reimported():
        forkserver.ensure_running()


def _run_in_child(task_path: str, log_path: str, env: dict[str, str], paths: list[str]) -> None:
    """Body of a step process forked from the fork server: own session, output to the log, then the step."""
    os.setsid()  # its own process group: cancelling the step also stops what the step started
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [p for p in paths if p not in sys.path]
    from modelyard.pipelines.entrypoint import main

    sys.stdout.flush()
    code = main(["--task", task_path])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit hooks inherited from the fork server


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """multiprocessing re-runs the parent's main script in each child to find pickled functions; steps are
    imported by their own module or file instead, so the script's top level (say, a `run_pipeline` call
    without a `__main__` guard) does not run again. A spec named `__main__` is what it skips."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = getattr(main, "__spec__", None)
    main.__spec__ = types.SimpleNamespace(name="__main__")  # type: ignore[assignment]
    try:
        yield
    finally:
        main.__spec__ = saved


@dataclass
class _Process:
    process: Any  # multiprocessing.Process
    started: float
    timeout_s: float | None
    result_path: Path
    cancelled: bool = False
    timed_out: bool = False


class LocalExecutor(Executor):
    """Each attempt in its own process, forked from a server that has Modelyard and numpy imported."""

    name = "local"

    def __init__(self, max_parallel: int | None = None, preload: Sequence[str] = ()) -> None:
        """`preload`: modules the steps import (e.g. "sklearn.linear_model"), imported once in the fork
        server instead of in every step process."""
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.preload = tuple(preload)
        self._warming: threading.Thread | None = None

    def warm_up(self) -> None:
        """Start the fork server (its imports take ~0.5 s) in the background: a step is about to run. Not
        done for a run that the cache answers entirely, so it ends without paying for it."""
        if self._warming is None:
            self._warming = threading.Thread(target=_start_fork_server, args=(self.preload,), daemon=True)
            self._warming.start()

    def submit(self, job: Job) -> _Process:
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        task_path = job.log_path.with_suffix(".task.json")
        result_path = job.log_path.with_suffix(".result.json")
        result_path.unlink(missing_ok=True)
        task_path.write_text(json.dumps({**job.task, "result": str(result_path)}))
        process = _fork_context(self.preload).Process(
            target=_run_in_child,
            args=(str(task_path), str(job.log_path), child_env(job), import_paths()),
            name=job.key,
            daemon=False,
        )
        with _main_not_reimported():
            process.start()
        return _Process(process, time.monotonic(), job.options.timeout_s, result_path)

    def poll(self, handle: _Process) -> dict[str, Any] | None:
        code = handle.process.exitcode
        if code is None:
            if handle.timeout_s is not None and time.monotonic() - handle.started > handle.timeout_s:
                handle.timed_out = True
                self._stop(handle)
            return None
        if handle.timed_out:
            return {"ok": False, "error": f"timed out after {handle.timeout_s:g} s"}
        if handle.cancelled:
            return {"ok": False, "error": "cancelled"}
        return failed_outcome(code, handle.result_path)

    def cancel(self, handle: _Process) -> None:
        handle.cancelled = True
        self._stop(handle)

    @staticmethod
    def _stop(handle: _Process, grace_s: float = 5.0) -> None:
        """SIGTERM the step's process group, then SIGKILL what is left after `grace_s`."""
        pid = handle.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:  # not yet in its own session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            handle.process.join(grace_s if sig == signal.SIGTERM else None)
            if handle.process.exitcode is not None:
                return
