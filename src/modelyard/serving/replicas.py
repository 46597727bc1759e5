"""Replicas: worker processes that each hold the model, fed batches by the front process.

The front process handles HTTP, validation and batching and never loads the model: it fetches the model's
files once (a remote model is downloaded into a temporary folder kept while the runner lives; a local one is
used where it is) and each worker loads the model from that folder, so nothing big is pickled to start one,
a replica the autoscaler adds downloads nothing, the replicas predict in parallel (no shared GIL), and a
worker that crashes (a segfault in native code, the OOM killer) takes down only itself. Batches
and outputs cross a pipe pickled with protocol 5: numpy arrays and DataFrames travel as their raw bytes,
never re-encoded as JSON.

- Dispatch: a batch goes to an idle worker; when every worker is busy it waits for one (the batcher keeps at
  most `replicas` batches in flight, so that wait is short).
- Crash: a worker that dies while predicting fails its batch with `ReplicaCrashed` (500) and is replaced.
- Scaling: `scale(n)` starts workers in the background (they take batches once their model is loaded) or
  retires some (an idle one at once, a busy one when its batch is done).
- Workers come from the fork server (the forkserver context: forking the front process itself, which runs
  threads and an event loop, could copy a held lock), and get the environment the front process had when the
  runner was made (`MODELYARD_HOME`, the tracking URI, credentials), not the fork server's older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidArgument, Unavailable
from modelyard.schemas.models import ModelConfig, ModelSignature
from modelyard.serving.batcher import Runner
from modelyard.serving.errors import ModelFailed, ReplicaCrashed

if TYPE_CHECKING:
    from modelyard.models.safety import Trust

logger = logging.getLogger(__name__)

_STOP_SECONDS = 10.0  # how long a retiring worker may take to finish its batch and exit before it is killed
_MAX_DISPATCH_THREADS = 256  # threads waiting on workers' answers: one per batch in flight, made as needed


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


def _portable(exc: BaseException) -> Exception:
    """`exc` if it survives pickling, else a built-in exception with its text (a ValueError stays one, so the
    batcher still answers 400 for inputs the model rejects)."""
    try:
        pickle.loads(_dumps(exc))
    except Exception:
        kind = ValueError if isinstance(exc, ValueError) else RuntimeError
        return kind(f"{type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker_main(conn: Connection, folder: Path, trust: Trust, env: dict[str, str]) -> None:
    """A replica: load the model from the fetched `folder`, say so (or why not), then answer batches until
    the front process closes the pipe."""
    # Ctrl-C reaches the whole process group: the front process drains the queue first, then closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(env)
    from modelyard.models.load import load_fetched

    try:
        predictor = load_fetched(folder, trust)
    except Exception as exc:
        conn.send_bytes(_dumps((False, _portable(exc))))
        return
    conn.send_bytes(_dumps((True, (predictor.flavor.name, predictor.config))))
    while True:
        try:
            request = conn.recv_bytes()
        except EOFError:
            return
        try:
            reply = _dumps((True, predictor.predict(pickle.loads(request))))
        except Exception as exc:
            reply = _dumps((False, _portable(exc)))
        try:
            conn.send_bytes(reply)
        except OSError:
            return  # the front process is gone


@dataclass(eq=False)
class _Worker:
    number: int  # replica number, for messages (1, 2, ...; a replacement gets a new one)
    process: Any  # multiprocessing.Process of the fork server's context
    conn: Connection

    def exchange(self, request: bytes) -> bytes:
        """Send a pickled batch, wait for the pickled reply (EOFError/OSError: the worker died)."""
        self.conn.send_bytes(request)
        return self.conn.recv_bytes()

    def stop(self) -> None:
        """Close the pipe (the worker exits once its current batch is answered) and reap it; kill it if it is
        stuck."""
        self.conn.close()
        self.process.join(_STOP_SECONDS)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()

    def death(self) -> str:
        """How the worker ended, for messages."""
        self.process.join(1)
        code = self.process.exitcode
        if code is None:
            return "stopped answering"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return f"was killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
        return f"exited with code {code}"


class ProcessRunner(Runner):
    """Runs the model at `uri` in `replicas` worker processes (see the module's docstring).

    It also stands in for the predictor in the front process: `signature` and `flavor` come from the first
    worker's model, so `ServedModel(name, version, runner, runner=runner)` serves it without loading the model
    here. `env`: the workers' environment (default: this process's, with its current tracking URI).
    """

    def __init__(
        self,
        uri: str | Path,
        replicas: int = 1,
        *,
        trusted: bool = False,
        name: str = "model",
        env: dict[str, str] | None = None,
    ) -> None:
        if replicas < 1:
            raise InvalidArgument(f"A process runner needs at least one replica, not {replicas}.")
        from modelyard.models.load import fetched
        from modelyard.pipelines.executor import _fork_context  # the fork server steps also start from

        self.uri, self.name = str(uri), name
        self._env = env if env is not None else _current_env()
        self._context = _fork_context([__name__, "modelyard.models"])
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._loading: set[_Worker] = set()
        self._starting = 0  # starts under way (also counts those not spawned yet)
        self._target = replicas
        self._closed = False
        self._failed_starts = 0
        self._last_failure = ""
        self._numbers = itertools.count(1)
        self._threads: set[threading.Thread] = set()
        self._files = contextlib.ExitStack()  # the fetched model's folder, until close()
        self._folder, self._trust = self._files.enter_context(fetched(self.uri, trusted=trusted))
        self._executor = ThreadPoolExecutor(_MAX_DISPATCH_THREADS, thread_name_prefix=f"modelyard-{name}")
        workers: list[_Worker] = []
        try:
            workers.extend(self._spawn() for _ in range(replicas))
            loaded = [self._handshake(worker) for worker in workers]
        except BaseException:
            for worker in workers:
                worker.process.kill()
                worker.stop()
            self._executor.shutdown()
            self._files.close()
            raise
        from modelyard.models.flavors.base import get_flavor

        flavor, self.config = loaded[0]
        self.flavor = get_flavor(flavor)
        self._idle.extend(workers)
        logger.info("Started %s of %s (pids %s)", _replicas(replicas), name, [w.process.pid for w in workers])

    @property
    def signature(self) -> ModelSignature | None:
        return self.config.signature

    @property
    def replicas(self) -> int:
        """Workers holding the model now (a retiring one counts until its batch is done)."""
        with self._cond:
            return len(self._idle) + len(self._busy)

    @property
    def target(self) -> int:
        """Workers asked for by the last `scale` (or the constructor)."""
        return self._target

    def pids(self) -> list[int]:
        """Process ids of the workers holding the model."""
        with self._cond:
            return [w.process.pid for w in (*self._idle, *self._busy)]

    def predict(self, batch: Any) -> Any:
        request = _dumps(batch)
        worker = self._acquire()
        try:
            reply = worker.exchange(request)
        except (EOFError, OSError):
            death = worker.death()
            self._lost(worker, f"{death} while predicting")
            raise ReplicaCrashed(
                f"Replica {worker.number} of model {self.name!r} {death} while predicting this request's "
                "batch; it is being replaced."
            ) from None
        except BaseException:
            self._lost(worker, "was interrupted", kill=True)  # the pipe is out of step: retire the worker
            raise
        self._release(worker)
        ok, value = pickle.loads(reply)
        if not ok:
            raise value
        return value

    async def apredict(self, batch: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, batch)

    def scale(self, replicas: int) -> None:
        """Run `replicas` workers: start the missing ones in the background, retire the extra ones (idle ones
        now, busy ones when their batch is done). Returns at once."""
        if replicas < 1:
            raise InvalidArgument(f"A process runner needs at least one replica, not {replicas}.")
        with self._cond:
            if self._closed:
                return
            self._target = replicas
            while self._idle and self._count() > replicas:
                self._in_background(self._idle.pop().stop)
            self._top_up()
            self._cond.notify_all()

    def close(self) -> None:
        """Let the batches in flight finish (the batcher drained its queue first), then stop every worker
        and wait for them."""
        with self._cond:
            self._closed = True
            for worker in self._loading:
                worker.process.kill()  # its starter thread sees EOF and gives up
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: not self._busy, _STOP_SECONDS):
                for worker in self._busy:
                    worker.process.kill()  # stuck: its batch fails as a crash
            workers, self._idle = self._idle, []
        for worker in workers:
            worker.stop()
        while True:  # starters, and stops of retired workers
            with self._cond:
                threads = list(self._threads)
            if not threads:
                break
            for thread in threads:
                thread.join()
        self._executor.shutdown()
        self._files.close()  # a downloaded model's folder goes once no worker can load from it

    # -- workers' lives (the state below is guarded by self._cond) ----------------------------------------

    def _count(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def _spawn(self) -> _Worker:
        from modelyard.pipelines.executor import _main_not_reimported

        number = next(self._numbers)
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(theirs, self._folder, self._trust, self._env),
            name=f"modelyard-replica-{self.name}-{number}",
            daemon=True,  # killed if this process exits without closing the runner
        )
        with _main_not_reimported():
            process.start()
        theirs.close()  # the worker's end lives in the worker only: its death reads as EOF here
        worker = _Worker(number, process, ours)
        with self._cond:
            self._loading.add(worker)
            if self._closed:
                process.kill()  # closed while it started: the handshake fails at once
        return worker

    def _handshake(self, worker: _Worker) -> tuple[str, ModelConfig]:
        """Wait for the worker's model to load: (flavor name, model config), or its error raised."""
        try:
            ok, value = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            raise ModelFailed(
                f"Replica {worker.number} of model {self.name!r} {worker.death()} while loading the model."
            ) from None
        finally:
            with self._cond:
                self._loading.discard(worker)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _start_one(self) -> None:
        """Body of a starter thread: one worker more, idle once its model is loaded."""
        worker = None
        try:
            worker = self._spawn()
            self._handshake(worker)
        except Exception as exc:
            if worker is not None:
                worker.stop()
            with self._cond:
                self._starting -= 1
                self._failed_starts += 1
                self._last_failure = f"starting one failed: {exc}"
                closed = self._closed
                self._cond.notify_all()
            if not closed:
                logger.error("A replica of %s failed to start: %s", self.name, exc)
            return
        with self._cond:
            self._starting -= 1
            keep = not self._closed and self._count() < self._target
            if keep:
                self._idle.append(worker)
            self._cond.notify_all()
        if keep:
            logger.info("Replica %d of %s is ready (pid %s)", worker.number, self.name, worker.process.pid)
        else:
            worker.stop()  # scaled down (or closed) while it loaded

    def _top_up(self) -> None:
        for _ in range(self._target - self._count()):
            self._starting += 1
            self._in_background(self._start_one)

    def _in_background(self, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            finally:
                with self._cond:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=f"modelyard-{self.name}-replicas", daemon=True)
        self._threads.add(thread)
        thread.start()

    def _acquire(self) -> _Worker:
        """An idle worker, marked busy; waits while all are busy or starting."""
        with self._cond:
            failed_starts = self._failed_starts
            while True:
                if self._closed:
                    raise Unavailable(f"Model {self.name!r} is shutting down.")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.is_alive():
                        self._busy.add(worker)
                        return worker
                    self._forget(worker, f"{worker.death()} while idle")
                if not self._busy and not self._starting:
                    if self._failed_starts > failed_starts:
                        raise ModelFailed(
                            f"No replica of model {self.name!r} is running: {self._last_failure}"
                        )
                    self._top_up()
                self._cond.wait()

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._busy.discard(worker)
            retire = self._closed or self._count() >= self._target
            if not retire:
                self._idle.append(worker)
            self._cond.notify_all()
        if retire:
            self._in_background(worker.stop)

    def _lost(self, worker: _Worker, how: str, kill: bool = False) -> None:
        if kill:
            worker.process.kill()
        with self._cond:
            self._busy.discard(worker)
            self._forget(worker, how)
            self._cond.notify_all()

    def _forget(self, worker: _Worker, how: str) -> None:
        """A worker that died: reap it and start a replacement (under the lock)."""
        logger.warning("Replica %d of %s %s; starting a replacement", worker.number, self.name, how)
        self._in_background(worker.stop)
        if not self._closed:
            self._top_up()


def _current_env() -> dict[str, str]:
    """This process's environment, with the tracking URI it uses now (`--tracking-uri` sets it in-process)."""
    from modelyard.tracking.fluent import get_tracking_uri

    return {**os.environ, "MODELYARD_TRACKING_URI": get_tracking_uri()}


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"
