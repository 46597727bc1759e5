"""The server's pipeline scheduler: a background thread that starts due pipeline schedules.

Every `interval_s` seconds it reads the due schedules, claims each one (a conditional UPDATE, so with several
server processes on one database exactly one of them starts a given run) and launches the run as a
subprocess, `python -m modelyard pipelines run TARGET --param ... --quiet --json`, on the server's own
tracking database and artifact root. A thread per run waits for it and records the run id, status and
error that the command printed; the loop never waits for a run. A schedule whose times passed while no
server was running runs once when one starts, not once per missed time. Nor does a schedule start again
while this process still runs its previous run: it stays due, and runs once when that one has ended.

On stop, running pipelines are interrupted (SIGINT: the pipeline records itself as KILLED), given
`grace_s` seconds, then killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelyard.schemas.pipelines import PipelineSchedule
from modelyard.store.pipeline_schedules import param_args
from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore

log = logging.getLogger("modelyard.server.scheduler")
MAX_OUTPUT = 4000  # characters of a failed command's output kept as the schedule's last error


@dataclass(frozen=True)
class RunOutcome:
    run_id: str | None
    status: str  # FINISHED, FAILED or KILLED
    error: str | None


def command(schedule: PipelineSchedule, python: str = sys.executable) -> list[str]:
    """The command line that runs one schedule's pipeline."""
    args = [python, "-m", "modelyard", "pipelines", "run", schedule.target]
    for text in param_args(schedule.params):
        args += ["--param", text]
    if schedule.experiment:
        args += ["--experiment", schedule.experiment]
    return [*args, "--quiet", "--json"]


def run_environment(tracking_uri: str, artifacts_uri: str | None) -> dict[str, str]:
    """The server's environment, pointed at its own tracking database and artifact root."""
    env = dict(os.environ)
    env["MODELYARD_TRACKING_URI"] = tracking_uri
    if artifacts_uri:
        env["MODELYARD_ARTIFACT_URI"] = artifacts_uri
    env.pop("MODELYARD_TOKEN", None)  # the run talks to the database itself, never through a server
    env["PYTHONUNBUFFERED"] = "1"
    return env


def outcome_of(returncode: int, stdout: str, stderr: str) -> RunOutcome:
    """What `pipelines run --json` reported: the JSON on its stdout, or (it failed before a run began, e.g.
    the file is gone) its error output."""
    report = None
    for line in (stdout.strip(), stdout.strip().splitlines()[-1] if stdout.strip() else ""):
        try:
            report = json.loads(line) if line else None
            break
        except ValueError:
            continue
    if isinstance(report, dict) and report.get("run_id"):
        status = str(report.get("status") or ("FINISHED" if returncode == 0 else "FAILED"))
        failed = [s for s in report.get("steps", []) if isinstance(s, dict) and s.get("state") == "FAILED"]
        error = None
        if status != "FINISHED":
            error = "; ".join(f"{s.get('instance')}: {s.get('error')}" for s in failed) or (
                stderr.strip()[-MAX_OUTPUT:] or f"exit status {returncode}"
            )
        return RunOutcome(str(report["run_id"]), status, error)
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else ""
        return RunOutcome(None, "KILLED", f"stopped by signal {name or -returncode}")
    text = (stderr.strip() or stdout.strip())[-MAX_OUTPUT:]
    return RunOutcome(None, "FAILED", text or f"exit status {returncode}")


class PipelineScheduler:
    """Starts due schedules of `store` from a background thread (`start`/`stop`); `tick` does one round.

    `clock` gives the time in seconds since the epoch (tests move it forward instead of waiting)."""

    def __init__(
        self,
        store: SqlPipelineScheduleStore,
        tracking_uri: str,
        artifacts_uri: str | None = None,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        grace_s: float = 10.0,
        python: str = sys.executable,
    ) -> None:
        self.store, self.tracking_uri, self.artifacts_uri = store, tracking_uri, artifacts_uri
        self.interval_s, self.clock, self.grace_s, self.python = interval_s, clock, grace_s, python
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[subprocess.Popen[str], threading.Thread]] = {}  # by schedule_id
        self._stopping = False

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # one round -------------------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Claim and start every due schedule; the names of those started."""
        now = self.now_ms()
        started = []
        for schedule in self.store.due(now):
            if self.is_running(schedule.schedule_id):
                continue  # its previous run is still going: due again (once) when that one has ended
            claimed = self.store.claim(schedule, now)
            if claimed is None:
                continue  # another server process took it
            self.launch(claimed)
            started.append(schedule.name)
        return started

    def run_now(self, name: str) -> PipelineSchedule:
        """Start a run of the schedule now (its next scheduled time stays as it is)."""
        schedule = self.store.get_schedule(name)
        if self.is_running(schedule.schedule_id):
            from modelyard.errors import InvalidState

            raise InvalidState(
                f"Schedule {name!r} is running already (since {schedule.last_run_time}); wait for it to end."
            )
        marked = self.store.start_now(name, self.now_ms())
        self.launch(marked)
        return marked

    def launch(self, schedule: PipelineSchedule) -> None:
        """Start the schedule's run as a subprocess and a thread that records how it ended."""
        started = schedule.last_run_time if schedule.last_run_time is not None else self.now_ms()
        with self._lock:
            if self._stopping:
                self._record(schedule, started, RunOutcome(None, "KILLED", "The server was shutting down."))
                return
            try:
                proc = subprocess.Popen(
                    command(schedule, self.python),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    errors="replace",
                    env=run_environment(self.tracking_uri, self.artifacts_uri),
                    start_new_session=True,  # a Ctrl-C on the server is not the pipeline's; stop() ends it
                )
            except (OSError, ValueError) as exc:  # ValueError: a NUL character in an argument
                self._record(schedule, started, RunOutcome(None, "FAILED", f"Cannot start the run: {exc}"))
                return
            watcher = threading.Thread(
                target=self._wait, args=(schedule, started, proc), name=f"modelyard-schedule-{schedule.name}"
            )
            watcher.daemon = True
            self._running[schedule.schedule_id] = (proc, watcher)
            watcher.start()
        log.info("Schedule %s: started pipeline %s (pid %s)", schedule.name, schedule.target, proc.pid)

    def _wait(self, schedule: PipelineSchedule, started: int, proc: subprocess.Popen[str]) -> None:
        try:
            stdout, stderr = proc.communicate()
            outcome = outcome_of(proc.returncode, stdout or "", stderr or "")
            if self._stopping and outcome.status != "FINISHED" and proc.returncode != 0:
                outcome = RunOutcome(outcome.run_id, "KILLED", outcome.error or "The server shut down.")
            self._record(schedule, started, outcome)
            log.info("Schedule %s: run %s ended %s", schedule.name, outcome.run_id, outcome.status)
        finally:
            with self._lock:
                if self._running.get(schedule.schedule_id, (None,))[0] is proc:
                    del self._running[schedule.schedule_id]

    def _record(self, schedule: PipelineSchedule, started: int, outcome: RunOutcome) -> None:
        for pause in (0.2, 1.0, None):  # the database may be busy a moment
            try:
                self.store.record_result(
                    schedule.schedule_id, started, outcome.run_id, outcome.status, outcome.error
                )
                return
            except Exception:
                if pause is None:
                    log.exception("Schedule %s: cannot record the outcome of its run", schedule.name)
                    return
                time.sleep(pause)

    def is_running(self, schedule_id: str) -> bool:
        with self._lock:
            return schedule_id in self._running

    @property
    def runs(self) -> Mapping[str, int]:
        """Runs in progress started by this process: schedule id -> pid."""
        with self._lock:
            return {sid: proc.pid for sid, (proc, _) in self._running.items()}

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the runs this process started have ended and been recorded; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                watchers = [w for _, w in self._running.values()]
            if not watchers:
                return True
            for watcher in watchers:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                watcher.join(left)
            if deadline is not None and time.monotonic() >= deadline:
                with self._lock:
                    return not self._running

    # the background thread -------------------------------------------------------------------------------
    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # the database may be down a while: log, try again next round
            log.exception("Pipeline scheduler: cannot read or claim the due schedules")

    def _loop(self) -> None:
        self._safe_tick()
        while not self._stop.wait(self.interval_s):
            self._safe_tick()

    def start(self) -> PipelineScheduler:
        if self._thread is None:
            self._stop.clear()
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="modelyard-scheduler", daemon=True)
            self._thread.start()
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """Stop checking, interrupt the runs in progress, and wait for them to be recorded."""
        grace = self.grace_s if grace_s is None else grace_s
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(30.0)
        with self._lock:
            self._stopping = True
            procs = [proc for proc, _ in self._running.values()]
        for proc in procs:
            _signal(proc, signal.SIGINT)
        if not self.wait(grace):
            with self._lock:
                procs = [proc for proc, _ in self._running.values()]
            for proc in procs:
                _signal(proc, signal.SIGKILL)
            self.wait(5.0)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _signal(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the pipeline's step processes too
    except (ProcessLookupError, PermissionError):
        pass


def run_blocking(
    store: SqlPipelineScheduleStore,
    name: str,
    tracking_uri: str,
    artifacts_uri: str | None = None,
    python: str = sys.executable,
) -> RunOutcome:
    """Run a schedule's pipeline now in the foreground and record it (`schedules run` on a database)."""
    scheduler = PipelineScheduler(store, tracking_uri, artifacts_uri, python=python)
    schedule = store.start_now(name)
    started = int(schedule.last_run_time or 0)
    proc = subprocess.Popen(
        command(schedule, python),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=run_environment(tracking_uri, artifacts_uri),
    )
    try:
        stdout, stderr = proc.communicate()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate()
    outcome = outcome_of(proc.returncode, stdout or "", stderr or "")
    scheduler._record(schedule, started, outcome)
    return outcome


__all__ = ["PipelineScheduler", "RunOutcome", "command", "outcome_of", "run_blocking", "run_environment"]
