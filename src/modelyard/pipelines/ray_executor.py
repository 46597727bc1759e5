"""Runs pipeline steps as Ray tasks on a Ray cluster (`modelyard pipelines run ... --executor ray --address`).

Each step attempt is one Ray task. The task runs the step entry point
(`python -m modelyard.pipelines.entrypoint --task FILE`) as a subprocess on whichever node Ray picks, so a
step that crashes or leaks takes down only itself, exactly as with the local executor, and sends back the
outcome, the step's output (stdout and stderr) and the node's IP address. The driver appends that output to
the attempt's log and puts the IP into the outcome under `NODE_KEY`.

Resources: `cpu` → `num_cpus` (1 when unset), `gpu` → `num_gpus`, `memory` → `memory` (bytes; Ray uses it for
scheduling only), plus Ray custom resources per step given to the executor (`resources={"train": {"big":
1}}`). Ray never retries a task by itself here (`max_retries=0`): the runner owns retries.

Code: the worker must import Modelyard and the step's code. A step from a pipeline file is loaded from the
same path on the worker, so on a multi-machine cluster that path must exist on every node (a shared
filesystem), the step's module must be installed there, or `working_dir=` ships a local folder to the
workers (Ray's `runtime_env` working_dir; the step then imports by module name relative to it).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.pipelines.dsl import parse_memory
from modelyard.pipelines.executor import Executor, Job, failed_outcome, import_paths

NODE_KEY = "node"  # the outcome's key for the IP address of the node that ran the step
NODE_ENV = "MODELYARD_RAY_NODE_IP"  # set in the step's process: the IP address of its node
DEFAULT_FORWARD_ENV = ("MODELYARD_*", "AWS_*")  # driver variables the steps get (besides the step's env)

_CONNECT_TIMEOUT_S = 5.0  # for the reachability check before ray.init (which would retry for minutes)
_CANCEL_GRACE_S = 5.0  # after a polite cancel, before the worker is killed
_STOP_GRACE_S = 3.0  # in the worker: SIGTERM to SIGKILL of the step's process group
_LOG_LIMIT = 8 * 2**20  # bytes of a step's output sent back to the driver (the end of it)
_INSTALL_HINT = "pip install 'modelyard[ray]'"


@dataclass
class _RayTask:
    ref: Any  # the Ray ObjectRef of (outcome, log text, node IP)
    job: Job
    submitted: float
    cancelled: bool = False
    timed_out: bool = False
    stop_requested: float | None = None  # when the polite cancel was sent
    forced: bool = False
    outcome: dict[str, Any] | None = None


class RayExecutor(Executor):
    """Each attempt a Ray task on a Ray cluster; the step itself a subprocess of the Ray worker.

    `address` is the cluster's GCS address "HOST:PORT" (what `ray start --head` prints; a Ray Client
    "ray://HOST:10001" works too). None uses RAY_ADDRESS, else starts a local Ray instance. An address that
    does not answer within a few seconds raises `InvalidArgument`. If this process is already connected to
    Ray (`ray.init` was called), that connection is used and left open on `close()`.

    `max_parallel` defaults to the cluster's CPUs. `resources` maps a step's name (its task id in the graph,
    e.g. "train") to Ray custom resources it needs, e.g. `{"train": {"gpu_node": 1}}`. `working_dir` is
    shipped to the workers as Ray's runtime_env working_dir. `forward_env` are shell-style patterns of this
    process's environment variables that the steps get (visible in the Ray job's runtime env).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        max_parallel: int | None = None,
        *,
        resources: Mapping[str, Mapping[str, float]] | None = None,
        working_dir: str | None = None,
        forward_env: Iterable[str] = DEFAULT_FORWARD_ENV,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.resources = {step: dict(needs) for step, needs in (resources or {}).items()}
        self.working_dir = str(Path(working_dir).expanduser().resolve()) if working_dir else None
        if self.working_dir and not Path(self.working_dir).is_dir():
            raise InvalidArgument(f"working_dir {working_dir!r} is not a folder.")
        self.forward_env = tuple(forward_env)
        self._owns_connection = False
        self._connected = False
        self._remote: Any = None
        ray = self._connect()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_parallel = max_parallel or max(1, cpus)

    # -- connection ----------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        ray = _import_ray()
        if self._connected and ray.is_initialized():
            return ray
        if ray.is_initialized():  # someone else's connection (a notebook, a Ray job): use it, leave it open
            self._owns_connection = False
        else:
            if self.address:
                _check_reachable(self.address)
            init_env = {"working_dir": self.working_dir} if self.working_dir else None
            try:
                ray.init(
                    address=self.address,
                    runtime_env=init_env,
                    log_to_driver=False,  # the steps' output goes to their logs, not to this console
                    logging_level=logging.WARNING,
                )
            except Exception as exc:
                if ray.is_initialized():
                    ray.shutdown()
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
                raise InvalidArgument(
                    f"Cannot connect to {where}: {type(exc).__name__}: {exc}. {_ADDRESS_HINT}"
                ) from None
            self._owns_connection = True
        self._connected = True
        self._remote = ray.remote(_run_step)
        return ray

    def close(self) -> None:
        """Disconnect from Ray when this executor connected (a later `submit` connects again)."""
        if self._connected and self._owns_connection:
            ray = _import_ray()
            if ray.is_initialized():
                ray.shutdown()
        self._connected = False
        self._owns_connection = False

    # -- attempts ------------------------------------------------------------------------------------------
    def submit(self, job: Job) -> _RayTask:
        self._connect()
        options = job.options
        env = {
            k: v for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in self.forward_env)
        }
        env.update(job.env)
        env.update(options.env)
        env["MODELYARD_TRACKING_URI"] = str(job.task["tracking_uri"])
        runtime_env: dict[str, Any] = {"env_vars": env}
        if self.working_dir and not self._owns_connection:  # else ray.init already ships it for the job
            runtime_env["working_dir"] = self.working_dir
        ray_options: dict[str, Any] = {
            "name": f"modelyard:{job.key}",
            "num_cpus": options.cpu or 1,
            "num_gpus": options.gpu,
            "runtime_env": runtime_env,
            "max_retries": 0,  # the runner retries (with its backoff and records)
            "retry_exceptions": False,
        }
        memory = parse_memory(options.memory)
        if memory:
            ray_options["memory"] = memory
        custom = {  # a step's own custom resources, should StepOptions get them, then the executor's
            **dict(getattr(options, "resources", None) or {}),
            **self.resources.get(_step_id(job.key), {}),
        }
        if custom:
            ray_options["resources"] = custom
        ref = self._remote.options(**ray_options).remote(job.task, options.timeout_s)
        return _RayTask(ref, job, time.monotonic())

    def poll(self, handle: _RayTask) -> dict[str, Any] | None:
        if handle.outcome is not None:
            return handle.outcome
        ray = _import_ray()
        ready, _ = ray.wait([handle.ref], timeout=0)
        if not ready:
            now = time.monotonic()
            timeout_s = handle.job.options.timeout_s
            if handle.stop_requested is None and timeout_s is not None and now - handle.submitted > timeout_s:
                handle.timed_out = True
                self._stop(handle)
            elif (
                handle.stop_requested is not None
                and not handle.forced
                and now - handle.stop_requested > _CANCEL_GRACE_S
            ):
                handle.forced = True  # the worker did not stop the step in time: kill the worker
                ray.cancel(handle.ref, force=True)
            return None
        outcome, log, node = self._result(handle)
        if log:
            handle.job.log_path.parent.mkdir(parents=True, exist_ok=True)
            with handle.job.log_path.open("a", encoding="utf-8") as f:
                f.write(log if log.endswith("\n") else log + "\n")
        if handle.timed_out:
            outcome = {"ok": False, "error": f"timed out after {handle.job.options.timeout_s:g} s"}
        elif handle.cancelled:
            outcome = {"ok": False, "error": "cancelled"}
        if node:
            outcome[NODE_KEY] = node
        handle.outcome = outcome
        return outcome

    def cancel(self, handle: _RayTask) -> None:
        if handle.outcome is not None:
            return
        handle.cancelled = True
        self._stop(handle)

    @staticmethod
    def _stop(handle: _RayTask) -> None:
        """Ask the task to stop (the worker then stops the step's process group); `poll` forces it later."""
        if handle.stop_requested is None:
            handle.stop_requested = time.monotonic()
            _import_ray().cancel(handle.ref, force=False)

    @staticmethod
    def _result(handle: _RayTask) -> tuple[dict[str, Any], str, str | None]:
        """(outcome, log text, node IP) of a finished task, or why the task has none."""
        ray = _import_ray()
        from ray import exceptions as rx

        try:
            outcome, log, node = ray.get(handle.ref, timeout=30)
            return dict(outcome), str(log), str(node)
        except rx.TaskCancelledError:
            return {"ok": False, "error": "cancelled"}, "", None
        except rx.RayTaskError as exc:  # the task body raised (not the step: its errors are in the outcome)
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if isinstance(cause, (KeyboardInterrupt, rx.TaskCancelledError)):
                return {"ok": False, "error": "cancelled"}, "", None
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).strip()
            error = f"the Ray task running the step failed: {detail}"
            return {"ok": False, "error": error, "traceback": str(exc)}, f"[modelyard] {error}\n{exc}\n", None
        except rx.OutOfMemoryError as exc:
            error = f"Ray killed the step's worker because its node ran out of memory: {exc}"
        except rx.WorkerCrashedError:
            error = "the Ray worker running the step died (killed, or out of memory)"
        except rx.NodeDiedError as exc:
            error = f"the Ray node running the step died: {exc}"
        except rx.RuntimeEnvSetupError as exc:
            error = f"Ray could not set up the step's runtime environment: {exc}"
        except (rx.RayError, rx.GetTimeoutError) as exc:
            error = f"Ray error while running the step: {type(exc).__name__}: {exc}"
        return {"ok": False, "error": error}, f"[modelyard] {error}\n", None


_ADDRESS_HINT = (
    "Pass the address of a running cluster's head node as HOST:PORT (the GCS port that `ray start --head "
    "--port=6379` opens, or `ray status` shows), set RAY_ADDRESS, or leave it out for a local Ray instance."
)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidArgument(f"The Ray executor needs Ray: {_INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail within seconds on an address nothing listens on (`ray.init` would retry for minutes)."""
    target = address.split("://", 1)[1] if "://" in address else address
    if target in ("auto", "local"):
        return
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise InvalidArgument(f"Ray address {address!r} should be HOST:PORT, e.g. 10.0.0.5:6379.")
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InvalidArgument(
            f"Cannot reach the Ray cluster at {address} ({reason} within {_CONNECT_TIMEOUT_S:g} s). "
            f"{_ADDRESS_HINT}"
        ) from None


def _step_id(key: str) -> str:
    """The step's task id of an instance key: "train[1,2]" → "train"."""
    return key.split("[", 1)[0]


# -- on the worker -------------------------------------------------------------------------------------------
def _run_step(task: dict[str, Any], timeout_s: float | None) -> tuple[dict[str, Any], str, str]:
    """Body of the Ray task, on a worker node: the step entry point in its own process group; returns
    (outcome, the step's output, this node's IP). A cancel (KeyboardInterrupt here) stops the step first."""
    import ray

    node = str(ray.util.get_node_ip_address())
    with tempfile.TemporaryDirectory(prefix="modelyard-ray-") as tmp:
        folder = Path(tmp)
        task_path, result_path, log_path = folder / "task.json", folder / "result.json", folder / "step.log"
        task_path.write_text(json.dumps({**task, "result": str(result_path)}))
        env = dict(os.environ)
        # the worker's import path (with the driver's folder or working_dir that Ray added) for the step
        env["PYTHONPATH"] = os.pathsep.join(import_paths())
        env.setdefault("PYTHONUNBUFFERED", "1")
        env[NODE_ENV] = node
        command = [sys.executable, "-m", "modelyard.pipelines.entrypoint", "--task", str(task_path)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stopping it stops what it started
            )
        started = time.monotonic()
        timed_out = False
        try:
            # a polling wait, not process.wait(): Ray's cancel interrupts Python code, not a blocking wait
            while process.poll() is None:
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    timed_out = True
                    _stop_group(process)
                    break
                time.sleep(0.05)
        except KeyboardInterrupt:  # ray.cancel: stop the step, send back its output so far
            _stop_group(process)
            return {"ok": False, "error": "cancelled"}, _tail(log_path), node
        except BaseException:
            _stop_group(process)
            raise
        code = process.wait()
        if timed_out:
            outcome: dict[str, Any] = {"ok": False, "error": f"timed out after {timeout_s:g} s"}
        else:
            outcome = failed_outcome(code, result_path)
        return outcome, _tail(log_path), node


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the step's process group, SIGKILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(_STOP_GRACE_S if sig == signal.SIGTERM else None)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader is gone; kill what it left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return


def _tail(path: Path) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > _LOG_LIMIT:
            f.seek(size - _LOG_LIMIT)
            head = f"[modelyard: the first {size - _LOG_LIMIT} bytes of the step's output were left out]\n"
        else:
            head = ""
        return head + f.read().decode("utf-8", errors="replace")
