"""Autoscaling: a model version's replica count follows the requests it has in flight, between MIN and MAX.

Like Knative's concurrency autoscaler: the batcher integrates its requests in flight (queued or being
predicted) over time; every `tick` the autoscaler reads their mean since the last tick, averages the readings
of the last `window` seconds (Knative's stable window) and recommends `ceil(mean / target)` replicas, clamped
to [min_replicas, max_replicas]. `target` is the number of requests in flight one replica should carry.

The delays work like the Kubernetes HPA's stabilization windows: it scales up only to a count that every
recommendation of the last `scale_up_delay` seconds reached, and down only to a count that none of the last
`scale_down_delay` seconds exceeded. A burst shorter than the up delay starts no worker; a lull shorter than
the down delay stops none.

Each decision is logged at INFO, kept in `decisions`, and exported at /metrics
(`modelyard_serving_autoscale_decisions_total{direction}`, `modelyard_serving_desired_replicas`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import InvalidArgument
from modelyard.serving.batcher import Runner

if TYPE_CHECKING:
    from modelyard.serving.deployment import ServedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoscaleConfig:
    """Bounds, target (requests in flight per replica) and timings in seconds."""

    min_replicas: int = 1
    max_replicas: int = 4
    target: float = 4.0
    window: float = 6.0
    scale_up_delay: float = 2.0
    scale_down_delay: float = 30.0
    tick: float = 0.5

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise InvalidArgument(
                "min_replicas must be at least 1: scaling to zero needs a component that holds requests while "
                "a replica starts (KServe's activator; use --target kserve)."
            )
        if self.max_replicas < self.min_replicas:
            raise InvalidArgument(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})."
            )
        if self.target <= 0:
            raise InvalidArgument("target (requests in flight per replica) must be positive.")
        if self.window <= 0 or self.tick <= 0:
            raise InvalidArgument("window and tick must be positive.")
        if self.scale_up_delay < 0 or self.scale_down_delay < 0:
            raise InvalidArgument("scale_up_delay and scale_down_delay cannot be negative.")


@dataclass(frozen=True)
class Decision:
    """One scaling: when (`time.time()`), from and to how many replicas, and the mean in flight that led to it."""

    at: float
    replicas_from: int
    replicas_to: int
    in_flight: float

    @property
    def direction(self) -> str:
        return "up" if self.replicas_to > self.replicas_from else "down"


class Autoscaler:
    """Scales `model`'s runner (one that can scale, like `ProcessRunner`) per `config`.

    Made for a served model, it attaches itself to the model's batcher, which runs it on its event loop from
    the first request on and stops it at shutdown; `tick()` and `observe()` are also callable directly.
    """

    def __init__(self, model: ServedModel, config: AutoscaleConfig | None = None) -> None:
        runner = model.runner
        assert runner is not None
        if type(runner).scale is Runner.scale:
            raise InvalidArgument(
                f"{type(runner).__name__} cannot scale; autoscaling needs replicas in worker processes "
                "(ProcessRunner)."
            )
        if model.batcher.autoscaler is not None:
            raise InvalidArgument(f"Model {model.batcher.name!r} already has an autoscaler.")
        self.model, self.runner, self.config = model, runner, config or AutoscaleConfig()
        self.name = model.batcher.name
        self.replicas = min(max(runner.replicas, self.config.min_replicas), self.config.max_replicas)
        if self.replicas != runner.replicas:
            runner.scale(self.replicas)
        self.desired = self.replicas  # the latest recommendation, before the delays
        self.decisions: deque[Decision] = deque(maxlen=1000)
        self.counts = {"up": 0, "down": 0}
        self._readings: deque[tuple[float, float]] = deque()  # (time, mean in flight since the last one)
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last: tuple[float, float] | None = None  # (time, batcher.in_flight_seconds())
        model.batcher.autoscaler = self

    async def run(self) -> None:
        """Tick every `config.tick` seconds until cancelled."""
        while True:
            try:
                self.tick()
            except Exception:
                logger.exception("Autoscaling %s failed", self.name)
            await asyncio.sleep(self.config.tick)

    def tick(self) -> Decision | None:
        """Read the batcher's requests in flight since the last tick, and scale if it is time to."""
        now, seconds = time.monotonic(), self.model.batcher.in_flight_seconds()
        last, self._last = self._last, (now, seconds)
        if last is None or now <= last[0]:
            return None
        return self.observe(now, (seconds - last[1]) / (now - last[0]))

    def observe(self, now: float, in_flight: float) -> Decision | None:
        """Take one reading (`in_flight`: mean requests in flight since the previous one, at monotonic time
        `now`); scale when the recommendation has held for the delay."""
        config, readings, recommendations = self.config, self._readings, self._recommendations
        readings.append((now, in_flight))
        while readings[0][0] <= now - config.window:
            readings.popleft()
        mean = sum(value for _, value in readings) / len(readings)
        wanted = math.ceil(mean / config.target - 1e-9)
        self.desired = min(max(wanted, config.min_replicas), config.max_replicas)
        recommendations.append((now, self.desired))
        horizon = now - max(config.scale_up_delay, config.scale_down_delay)
        while len(recommendations) > 1 and recommendations[1][0] <= horizon:
            recommendations.popleft()  # keeps one at or before the horizon: the history covers the delays
        up, down = self._held(now, config.scale_up_delay), self._held(now, config.scale_down_delay)
        new = self.replicas
        if up is not None and min(up) > new:
            new = min(up)
        elif down is not None and max(down) < new:
            new = max(down)
        if new == self.replicas:
            return None
        decision = Decision(time.time(), self.replicas, new, mean)
        self.runner.scale(new)
        self.replicas = new
        self.decisions.append(decision)
        self.counts[decision.direction] += 1
        logger.info(
            "Scaled %s from %d to %d replicas: %.1f requests in flight (mean over %g s), %.1f per replica, "
            "target %g",
            self.name,
            decision.replicas_from,
            new,
            mean,
            config.window,
            mean / decision.replicas_from,
            config.target,
        )
        return decision

    def _held(self, now: float, delay: float) -> list[int] | None:
        """The recommendations of the last `delay` seconds; None while the history is shorter than that."""
        if self._recommendations[0][0] > now - delay:
            return None
        return [count for at, count in self._recommendations if at >= now - delay]
