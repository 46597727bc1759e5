"""Buffered metric writer: `log_metric` appends to memory and returns; a background thread stores points in
batches at least every `flush_interval` seconds. Points that cannot be stored (store unreachable) are
spooled to local files and replayed by a later flush, in this process or the next one: nothing is lost."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from modelyard.errors import InvalidState, ModelyardError, NotFound, Unavailable
from modelyard.schemas import Metric

log = logging.getLogger(__name__)

Sink = Callable[[str, Sequence[Metric]], None]
Point = tuple[str, str, float, int, int]  # run_id, key, value, step, timestamp
MAX_BATCH = 5000  # points per store call: one transaction each


class BufferedWriter:
    def __init__(self, sink: Sink, spool_dir: Path, flush_interval: float = 1.0) -> None:
        self._sink = sink
        self._spool_dir = spool_dir
        self._interval = flush_interval
        self._pending: list[Point] = []
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time, keeps per-run order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    # producer side: must stay cheap --------------------------------------------------------------------
    def add(self, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        with self._lock:
            self._pending.append((run_id, key, value, step, timestamp))
            size = len(self._pending)
        if self._thread is None:
            self._start()
        if size >= MAX_BATCH:
            self._wake.set()

    def take(self, run_id: str) -> list[Metric]:
        """Remove and return the run's pending points, for a caller that stores them itself."""
        with self._lock:
            mine = [p for p in self._pending if p[0] == run_id]
            if mine:
                self._pending = [p for p in self._pending if p[0] != run_id]
        return [Metric.model_construct(key=k, value=v, step=s, timestamp=t) for _, k, v, s, t in mine]

    def give_back(self, run_id: str, points: Sequence[Metric]) -> None:
        """Return points that `take` handed out but could not be stored; the next flush handles them."""
        with self._lock:
            self._pending[:0] = [(run_id, m.key, m.value, m.step, m.timestamp) for m in points]

    def has_spool(self, run_id: str) -> bool:
        return self._spool_path(run_id).exists()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="modelyard-metric-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        self.replay_spool()
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the loop must survive anything; flush() already spooled the points
                log.exception("Background metric flush failed")

    # consumer side ---------------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Store every pending point now. Returns False when some had to be spooled (store unreachable)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            sent = self._send(batch)
            replayed = self._replay()
            return sent and replayed

    def _send(self, batch: list[Point]) -> bool:
        by_run: dict[str, list[Metric]] = defaultdict(list)
        for run_id, key, value, step, ts in batch:
            by_run[run_id].append(Metric.model_construct(key=key, value=value, step=step, timestamp=ts))
        ok = True
        for run_id, points in by_run.items():
            # A run already spooled stays spooled until replayed (right after), so its points keep their order.
            if self._spool_path(run_id).exists():
                self._spool(run_id, points)
                continue
            for start in range(0, len(points), MAX_BATCH):
                chunk = points[start : start + MAX_BATCH]
                try:
                    self._sink(run_id, chunk)
                except (NotFound, InvalidState) as exc:
                    self._spool(run_id, points[start:], rejected=True)
                    log.error(
                        "Metrics for run %s were refused (%s); kept in %s", run_id, exc, self._spool_dir
                    )
                    ok = False
                    break
                except Exception as exc:  # unreachable store, network, lock timeout: spool and retry later
                    self._spool(run_id, points[start:])
                    log.warning(
                        "Tracking store unavailable (%s); %d points spooled to %s",
                        _short(exc),
                        len(points) - start,
                        self._spool_path(run_id),
                    )
                    ok = False
                    break
        return ok

    # spool ---------------------------------------------------------------------------------------------
    def _spool_path(self, run_id: str, suffix: str = ".jsonl") -> Path:
        return self._spool_dir / f"{run_id}{suffix}"

    def _spool(self, run_id: str, points: Sequence[Metric], rejected: bool = False) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        path = self._spool_path(run_id, ".rejected.jsonl" if rejected else ".jsonl")
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(_line(m) for m in points)
            f.flush()
            os.fsync(f.fileno())

    def replay_spool(self) -> bool:
        with self._flush_lock:
            return self._replay()

    def _replay(self) -> bool:
        """Send spooled points; each file is claimed by an atomic rename so two processes never both send it."""
        if not self._spool_dir.is_dir():
            return True
        ok = True
        for path in sorted(self._spool_dir.glob("*.jsonl")):
            if path.name.endswith(".rejected.jsonl"):
                continue
            run_id = path.name[: -len(".jsonl")]
            claimed = path.with_name(f"{run_id}.{uuid.uuid4().hex[:8]}.replaying")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another process claimed it
            points = [_parse(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line]
            try:
                for start in range(0, len(points), MAX_BATCH):
                    self._sink(run_id, points[start : start + MAX_BATCH])
                    done = start + MAX_BATCH
                    # Record progress so a crash mid-replay re-sends at most one batch.
                    claimed.write_text("".join(_line(m) for m in points[done:]), encoding="utf-8")
                claimed.unlink()
            except Exception as exc:  # put what is left back; refused points go to the rejected file
                rejected = isinstance(exc, ModelyardError) and not isinstance(exc, Unavailable)
                remaining = [
                    _parse(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line
                ]
                claimed.unlink()
                self._spool(run_id, remaining, rejected=rejected)
                ok = False
        return ok

    def pending_spool_files(self) -> list[Path]:
        return sorted(self._spool_dir.glob("*.jsonl")) if self._spool_dir.is_dir() else []

    def close(self, timeout: float = 30.0) -> bool:
        """Flush, stop the thread; spooled points stay on disk for the next process."""
        deadline = time.monotonic() + timeout
        stored = self.flush()
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return stored


def _line(m: Metric) -> str:
    return json.dumps({"k": m.key, "v": m.value, "s": m.step, "t": m.timestamp}) + "\n"


def _parse(line: str) -> Metric:
    d = json.loads(line)
    return Metric.model_construct(key=d["k"], value=d["v"], step=d["s"], timestamp=d["t"])


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
