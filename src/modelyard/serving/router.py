"""Traffic between the versions served under one name: a primary, an optional canary taking a share of the
requests, and shadows that see a copy of every request without answering it.

- Split: a smooth weighted round robin between the primary and the canary, so the canary's share is exact
  over any run of requests (10% is 1 request in every 10, evenly spread), not merely right on average.
  Requests naming a version (`/v2/models/m/versions/v/infer`) never go through the split.
- Shadows: the routed request is also queued on each shadow's batcher as a background task. Its answer is
  never returned; it is compared with the answer the client got (agreement, per row) and, when the request
  is in the payload log, logged under the same request id with role `shadow`. A shadow cannot slow down or
  fail the request it mirrors: it runs on its own batcher and thread, the mirror is dropped (and counted)
  when the shadow's queue is full, and its errors are only counted.
- Recent outcomes: every routed or direct request's status and latency is kept per version for a while
  (`stats(model, since)`), as is agreement per (primary, shadow) pair (`agreement(...)`), so a rollout can
  judge a canary on the last minutes without scraping Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from modelyard.errors import InvalidArgument, ModelyardError, Unavailable
from modelyard.models.signature import to_numpy

if TYPE_CHECKING:
    from modelyard.serving.deployment import ServedModel
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.payload import Payload

logger = logging.getLogger(__name__)

WINDOW_EVENTS = 200_000  # recent outcomes kept per version (and per shadow pair): minutes of heavy traffic
RTOL, ATOL = 1e-5, 1e-8  # numbers "agree" when numpy.isclose says so (its defaults)


class Split:
    """Where requests without a version go: `primary`, or `canary` for `percent` of them."""

    def __init__(self, primary: ServedModel) -> None:
        self.primary = primary
        self.canary: ServedModel | None = None
        self.shadows: list[ServedModel] = []
        self._percent = 0.0
        self._credit = 0.0  # canary's minus primary's credit in the smooth weighted round robin

    @property
    def percent(self) -> float:
        """The canary's share of the requests, 0 to 100 (0 without a canary)."""
        return self._percent if self.canary is not None else 0.0

    @percent.setter
    def percent(self, value: float) -> None:
        if not 0.0 <= value <= 100.0:
            raise InvalidArgument(f"A canary's traffic share is a percentage from 0 to 100, not {value:g}.")
        self._percent, self._credit = float(value), 0.0

    def choose(self) -> ServedModel:
        """The version to answer the next request (smooth weighted round robin: exact, evenly spread)."""
        canary, percent = self.canary, self._percent
        if canary is None or percent <= 0.0:
            return self.primary
        if percent >= 100.0:
            return canary
        # Each request both versions earn their weight and the one with more credit answers, paying the
        # total (100). Only the difference of the two credits matters, so one number is kept.
        self._credit += percent - (100.0 - percent)
        if self._credit > 0.0:
            self._credit -= 100.0
            return canary
        self._credit += 100.0
        return self.primary

    def role(self, model: ServedModel) -> str | None:
        if model is self.primary:
            return "primary"
        if model is self.canary:
            return "canary"
        if model in self.shadows:
            return "shadow"
        return None


@dataclass(frozen=True)
class TrafficStats:
    """A version's answered requests over a window: `errors` are 5xx answers (model failures, overload,
    timeouts), not the client's 4xx mistakes."""

    requests: int
    errors: int
    p99_ms: float | None  # None without requests

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class AgreementStats:
    """A shadow's mirrored requests over a window: rows whose output matched the answer the client got."""

    requests: int  # mirrored requests the shadow answered, compared with a successful answer
    rows: int
    agreed_rows: int
    failed: int  # mirrored requests the shadow failed on

    @property
    def agreement(self) -> float | None:
        return self.agreed_rows / self.rows if self.rows else None


class _Window:
    """Recent (time, a, b) events, newest last; at most WINDOW_EVENTS of them."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: deque[tuple[float, float, float]] = deque(maxlen=WINDOW_EVENTS)

    def add(self, a: float, b: float) -> None:
        self.events.append((time.monotonic(), a, b))

    def since(self, moment: float) -> Iterator[tuple[float, float]]:
        """The (a, b) of the events at or after `moment` (a time.monotonic() value), newest first."""
        for at, a, b in reversed(self.events):
            if at < moment:
                return
            yield a, b


@dataclass(frozen=True)
class ShadowResult:
    """What one shadow did with one mirrored request (for the payload log)."""

    shadow: ServedModel
    output: Any  # None when it failed
    error: ModelyardError | None
    seconds: float


class Mirror:
    """The shadow copies of one request. `answered(output)` gives them the answer the client got (None if
    the request failed), which they wait for before comparing."""

    __slots__ = ("_answer",)

    def __init__(self, answer: asyncio.Future[Any]) -> None:
        self._answer = answer

    def answered(self, output: Any) -> None:
        if not self._answer.done():
            self._answer.set_result(output)


class Router:
    """The splits of one deployment (one per served name), its shadow mirroring, and recent outcomes."""

    def __init__(self) -> None:
        self.splits: dict[str, Split] = {}
        self.metrics: ServingMetrics | None = None  # set by the serving app
        self._outcomes: dict[ServedModel, _Window] = {}
        self._agreement: dict[tuple[ServedModel, ServedModel], _Window] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def role(self, model: ServedModel) -> str:
        """primary, canary, shadow, or `version` for a version served only when a request names it."""
        split = self.splits.get(model.name)
        return (split.role(model) if split is not None else None) or "version"

    # -- outcomes -----------------------------------------------------------------------------------------

    def observe(self, model: ServedModel, status: int, seconds: float) -> None:
        """Remember one answered request of `model` (its HTTP status and latency)."""
        window = self._outcomes.get(model)
        if window is None:
            window = self._outcomes[model] = _Window()
        window.add(seconds, status >= 500)

    def stats(self, model: ServedModel, since: float) -> TrafficStats:
        """`model`'s requests answered since `since` (a time.monotonic() value)."""
        window = self._outcomes.get(model)
        events = list(window.since(since)) if window is not None else []
        if not events:
            return TrafficStats(0, 0, None)
        latencies = np.fromiter((seconds for seconds, _ in events), np.float64, len(events))
        errors = sum(1 for _, failed in events if failed)
        return TrafficStats(len(events), errors, float(np.percentile(latencies, 99)) * 1000.0)

    def agreement(self, primary: ServedModel, shadow: ServedModel, since: float) -> AgreementStats:
        """How `shadow` agreed with the answers `primary` gave on the requests mirrored since `since`."""
        window = self._agreement.get((primary, shadow))
        requests = rows = agreed = failed = 0
        for row_count, agreed_rows in window.since(since) if window is not None else ():
            if row_count < 0:
                failed += 1
            else:
                requests += 1
                rows += int(row_count)
                agreed += int(agreed_rows)
        return AgreementStats(requests, rows, agreed, failed)

    def forget(self, model: ServedModel) -> None:
        """Drop what is kept about `model` (it was drained and is served no more)."""
        self._outcomes.pop(model, None)
        for pair in [pair for pair in self._agreement if model in pair]:
            del self._agreement[pair]

    # -- shadows ------------------------------------------------------------------------------------------

    def mirror(
        self,
        model: ServedModel,
        payload: Payload,
        on_result: Callable[[ShadowResult], None] | None = None,
    ) -> Mirror | None:
        """Queue a copy of `model`'s request on each shadow of its name (None when it has none).

        `on_result` is called with each shadow's outcome (on the event loop, after the client's answer).
        """
        split = self.splits.get(model.name)
        if split is None or not split.shadows:
            return None
        answer: asyncio.Future[Any] | None = None
        for shadow in split.shadows:
            if shadow is model:
                continue  # a canary that is also mirrored (a rollout measuring agreement) answers itself
            batcher = shadow.batcher
            if batcher.closing or batcher.stats.queue_rows + payload.rows > batcher.config.max_queue:
                self._count(model, shadow, "dropped")
                continue
            if answer is None:
                answer = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                self._shadow(model, shadow, payload, answer, on_result),
                name=f"modelyard-shadow-{shadow.name}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Mirror(answer) if answer is not None else None

    async def settle(self, timeout: float | None = None) -> None:
        """Wait until the mirrored requests in flight have been answered and compared (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def _shadow(
        self,
        model: ServedModel,
        shadow: ServedModel,
        payload: Payload,
        answer: asyncio.Future[Any],
        on_result: Callable[[ShadowResult], None] | None,
    ) -> None:
        started = time.perf_counter()
        output: Any = None
        error: ModelyardError | None = None
        try:
            output = await shadow.batcher.submit(payload)
        except Unavailable:  # its queue filled up since `mirror` looked, or it is draining
            self._count(model, shadow, "dropped")
            return
        except ModelyardError as exc:
            error = exc
        except Exception as exc:  # never let a shadow's failure escape into the event loop's log unexplained
            error = ModelyardError(f"The shadow failed: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - started
        answered = await answer
        try:
            window = self._agreement.get((model, shadow))
            if window is None:
                window = self._agreement[model, shadow] = _Window()
            if error is not None:
                window.add(-1, 0)
                self._count(model, shadow, "failed")
            else:
                self._count(model, shadow, "answered")
                if answered is not None:
                    agreed = agreeing_rows(answered, output, payload.rows)
                    window.add(payload.rows, agreed)
                    if self.metrics is not None:
                        self.metrics.shadow_compared(model, shadow, payload.rows, agreed)
            if on_result is not None:
                on_result(ShadowResult(shadow, output, error, seconds))
        except Exception:
            logger.exception("Recording the answer of shadow %s/%s failed", shadow.name, shadow.version)

    def _count(self, model: ServedModel, shadow: ServedModel, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.shadow_request(model, shadow, outcome)


def agreeing_rows(answer: Any, other: Any, rows: int) -> int:
    """How many of a request's `rows` got the same output in `answer` and `other`: every output tensor or
    column equal (numbers: close, as numpy.isclose), row by row. Outputs of different shapes agree on none."""
    try:
        first, second = _parts(answer), _parts(other)
        if first.keys() != second.keys():
            return 0
        agree = np.ones(rows, dtype=bool)
        for key, a in first.items():
            b = second[key]
            if a.shape != b.shape:
                return 0
            if a.dtype.kind in "biufc" and b.dtype.kind in "biufc":
                same = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
            else:
                same = np.asarray(a == b, dtype=bool)
            if a.ndim == 0 or a.shape[0] != rows:  # no row axis: the whole tensor agrees or not
                return rows if bool(np.all(same)) else 0
            agree &= same.reshape(rows, -1).all(axis=1)
        return int(agree.sum())
    except Exception:  # outputs too odd to compare (ragged objects, ...) count as disagreeing
        return 0


def _parts(output: Any) -> dict[str, np.ndarray]:
    if isinstance(output, np.ndarray):
        return {"": output}
    if isinstance(output, Mapping):
        return {str(k): to_numpy(v) for k, v in output.items()}
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(output, pd.DataFrame):
        return {str(c): to_numpy(output[c]) for c in output.columns}
    return {"": to_numpy(output)}
