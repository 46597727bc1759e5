"""Progressive delivery of a candidate version on a serving deployment: `Rollout(deployment, plan).run()`.

The candidate is served as the canary of the current version. Its share of the traffic goes through the
plan's steps (e.g. 10% → 50% → 100%); each step is held for `hold` seconds (and until the candidate has
answered `min_requests` requests) while the guards are checked every `check_interval` seconds on the
candidate's requests of that step:

- error rate: 5xx answers (model failures, overload, timeouts) per answered request, at most
  `max_error_rate`;
- p99 latency, at most `max_p99_ms`;
- optionally agreement: the candidate is also a shadow of the current version, and the fraction of mirrored
  rows where it answered as the current version did must stay at least `min_agreement` (measured on the
  traffic the current version still answers, so not at 100%).

A violated guard rolls back at once: the candidate gets no more traffic, is drained and removed, and the
current version goes on serving. After the last step the candidate is promoted in the registry (an alias
moved, or a stage transition) and becomes the primary of the deployment. Every step's numbers and decision,
and the outcome with its reason, are recorded as `rollout.*` tags of the candidate's registry version, so the
history shows in `modelyard models events NAME` (each tag is an event) and `modelyard models show NAME`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.errors import GateFailed, InvalidArgument, ModelyardError
from modelyard.serving.router import AgreementStats, TrafficStats

if TYPE_CHECKING:
    from modelyard.registry.client import RegistryClient
    from modelyard.serving.deployment import Deployment, ServedModel

logger = logging.getLogger(__name__)

TAG_PREFIX = "rollout."


@dataclass(frozen=True)
class Guards:
    """Limits on the candidate's requests during each step (None: not checked)."""

    max_error_rate: float | None = 0.01
    max_p99_ms: float | None = None
    min_agreement: float | None = None
    min_requests: int = 100  # a step is judged passed only once the candidate answered this many

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0.0 <= self.max_error_rate <= 1.0:
            raise InvalidArgument(
                f"The maximum error rate is a fraction from 0 to 1, not {self.max_error_rate:g}."
            )
        if self.max_p99_ms is not None and self.max_p99_ms <= 0:
            raise InvalidArgument(f"The maximum p99 latency must be positive, not {self.max_p99_ms:g} ms.")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise InvalidArgument(
                f"The minimum agreement is a fraction from 0 to 1, not {self.min_agreement:g}."
            )
        if self.min_requests < 1:
            raise InvalidArgument("A step needs at least 1 request to be judged (min_requests >= 1).")

    def describe(self) -> str:
        parts = []
        if self.max_error_rate is not None:
            parts.append(f"error rate <= {_percent(self.max_error_rate)}")
        if self.max_p99_ms is not None:
            parts.append(f"p99 <= {self.max_p99_ms:g} ms")
        if self.min_agreement is not None:
            parts.append(f"agreement >= {_percent(self.min_agreement)}")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class RolloutPlan:
    """Roll served version `candidate` of `name` out over the current primary.

    `registry_name`/`registry_version`: the candidate's registry version, where the history is recorded
    and which is promoted (None: the registry is left alone). Promotion: move `promote_alias` to it, or
    transition it to `promote_stage` (archiving the versions there).
    """

    name: str
    candidate: str
    steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    hold: float = 300.0  # seconds per step
    guards: Guards = field(default_factory=Guards)
    registry_name: str | None = None
    registry_version: int | None = None
    promote_alias: str | None = None
    promote_stage: str | None = None
    check_interval: float = 1.0

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or any(not 0 < p <= 100 for p in steps) or list(steps) != sorted(set(steps)):
            raise InvalidArgument(
                f"Rollout steps are increasing percentages from 0 (excluded) to 100, e.g. 10,50,100; got "
                f"{','.join(f'{p:g}' for p in steps) or 'none'}."
            )
        if steps[-1] != 100:
            raise InvalidArgument("The last rollout step must be 100 (all traffic) before the promotion.")
        if self.hold <= 0 or self.check_interval <= 0:
            raise InvalidArgument("The hold window and the check interval must be positive.")
        if self.promote_alias and self.promote_stage:
            raise InvalidArgument("Promote to an alias or to a stage, not both.")
        if (self.promote_alias or self.promote_stage) and self.registry_name is None:
            raise InvalidArgument(
                "Promoting needs the candidate's registry version (registry_name, registry_version)."
            )

    @property
    def target(self) -> str | None:
        """The promotion as the registry's gates name it: `@alias` or the stage."""
        if self.promote_alias:
            return "@" + self.promote_alias
        return self.promote_stage


@dataclass(frozen=True)
class StepReport:
    """One step's outcome: what the candidate did while it held `percent` of the traffic."""

    step: int  # 1-based
    steps: int
    percent: float
    seconds: float
    traffic: TrafficStats
    agreement: AgreementStats | None
    decision: str  # "next", "promote" or "rollback"
    reason: str | None = None

    def summary(self) -> str:
        """One line: `10%: 30 s, 1,234 requests, errors 0.1%, p99 12.3 ms, agreement 99.5% -> next`."""
        t = self.traffic
        parts = [f"{self.percent:g}%", format_duration(self.seconds), f"{t.requests:,} requests"]
        parts.append(f"errors {_percent(t.error_rate)}")
        if t.p99_ms is not None:
            parts.append(f"p99 {t.p99_ms:.1f} ms")
        if self.agreement is not None and self.agreement.agreement is not None:
            parts.append(f"agreement {_percent(self.agreement.agreement)} of {self.agreement.rows:,} rows")
        text = ", ".join(parts) + f" -> {self.decision}"
        return text + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class RolloutResult:
    outcome: str  # "promoted" or "rolled back"
    reason: str | None
    steps: list[StepReport]


class Rollout:
    """Drives `plan` on `deployment`, whose `plan.name` serves the current version as primary and the
    candidate as canary (and, to measure agreement, as a shadow too)."""

    def __init__(
        self,
        deployment: Deployment,
        plan: RolloutPlan,
        *,
        registry: RegistryClient | None = None,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        split = deployment.split(plan.name)
        candidate = deployment.get(plan.name, plan.candidate)
        if split.canary is not candidate:
            raise InvalidArgument(
                f"Version {plan.candidate!r} of {plan.name!r} must be served as its canary to be rolled out."
            )
        if plan.guards.min_agreement is not None and candidate not in split.shadows:
            raise InvalidArgument(
                "Measuring agreement needs the candidate mirrored as a shadow of the current version too."
            )
        if plan.registry_name is not None and registry is None:
            from modelyard.registry.client import RegistryClient

            registry = RegistryClient()
        self.deployment, self.plan, self.registry, self.on_step = deployment, plan, registry, on_step
        self.candidate: ServedModel = candidate
        self.current: ServedModel = split.primary
        self.steps: list[StepReport] = []

    async def run(self) -> RolloutResult:
        """Step through the plan; the result says whether the candidate was promoted or rolled back.

        Cancelled (the server stops): the candidate gets no more traffic and the rollout is recorded as
        aborted. A gate policy that would refuse the promotion stops the rollout before any traffic moves.
        """
        plan = self.plan
        await asyncio.to_thread(self.check_gates)
        await self._forget_last_rollout()
        steps = " -> ".join(f"{p:g}%" for p in plan.steps)
        started = f"running: {steps}, {format_duration(plan.hold)} each; guards: {plan.guards.describe()}"
        await self._tag("state", started)
        self.deployment.changed("note", f"rollout of version {plan.candidate} {started}", state="ROLLING_OUT")
        try:
            for index, percent in enumerate(plan.steps, start=1):
                report = await self._step(index, percent)
                self.steps.append(report)
                await self._tag(f"step.{index}", report.summary())
                if self.on_step is not None:
                    self.on_step(report)
                if report.decision == "rollback":
                    assert report.reason is not None
                    return await self._roll_back(f"step {index} ({percent:g}%): {report.reason}")
            return await self._promote()
        except asyncio.CancelledError:
            self.deployment.split(plan.name).percent = 0.0
            self.deployment.changed("rolled_back", "rollout aborted: the server stopped during the rollout")
            self._tag_now("state", "aborted: the server stopped during the rollout")
            raise

    # -- steps ----------------------------------------------------------------------------------------------

    async def _step(self, index: int, percent: float) -> StepReport:
        plan, router = self.plan, self.deployment.router
        self.deployment.set_canary_percent(plan.name, percent)
        loop = asyncio.get_running_loop()
        started, since = loop.time(), time.monotonic()
        while True:
            await asyncio.sleep(plan.check_interval)
            held = loop.time() - started
            traffic = router.stats(self.candidate, since)
            agreement = None
            if plan.guards.min_agreement is not None:
                agreement = router.agreement(self.current, self.candidate, since)
            violation = self._violation(traffic, agreement)
            last = index == len(plan.steps)
            if violation is not None:
                return StepReport(
                    index, len(plan.steps), percent, held, traffic, agreement, "rollback", violation
                )
            if held >= plan.hold and self._enough(traffic, agreement, percent):
                return StepReport(
                    index, len(plan.steps), percent, held, traffic, agreement, "promote" if last else "next"
                )

    def _enough(self, traffic: TrafficStats, agreement: AgreementStats | None, percent: float) -> bool:
        """Whether the step saw enough requests to be judged (mirrored ones too while they can come)."""
        needed = self.plan.guards.min_requests
        if traffic.requests < needed:
            return False
        return agreement is None or percent >= 100 or agreement.requests >= needed

    def _violation(self, traffic: TrafficStats, agreement: AgreementStats | None) -> str | None:
        """Why the candidate fails its guards so far (None: it does not, or too few requests to say)."""
        guards = self.plan.guards
        if traffic.requests >= guards.min_requests:
            if guards.max_error_rate is not None and traffic.error_rate > guards.max_error_rate:
                return (
                    f"error rate {_percent(traffic.error_rate)} > {_percent(guards.max_error_rate)} "
                    f"({traffic.errors:,} of {traffic.requests:,} requests failed)"
                )
            if (
                guards.max_p99_ms is not None
                and traffic.p99_ms is not None
                and traffic.p99_ms > guards.max_p99_ms
            ):
                return f"p99 latency {traffic.p99_ms:.1f} ms > {guards.max_p99_ms:g} ms"
        if (
            agreement is not None
            and guards.min_agreement is not None
            and agreement.requests >= guards.min_requests
            and agreement.agreement is not None
            and agreement.agreement < guards.min_agreement
        ):
            return (
                f"agreement {_percent(agreement.agreement)} < {_percent(guards.min_agreement)} "
                f"({agreement.agreed_rows:,} of {agreement.rows:,} mirrored rows matched version "
                f"{self.current.version})"
            )
        return None

    # -- outcomes -------------------------------------------------------------------------------------------

    async def _roll_back(self, reason: str) -> RolloutResult:
        plan = self.plan
        self.deployment.set_canary_percent(plan.name, 0.0)
        await self.deployment.remove(plan.name, plan.candidate)
        self.deployment.changed("rolled_back", f"rolled back version {plan.candidate}: {reason}")
        await self._tag("reason", reason)
        await self._tag("state", f"rolled back; version {self.current.version} kept serving")
        logger.warning("Rolled back %s version %s: %s", plan.name, plan.candidate, reason)
        return RolloutResult("rolled back", reason, self.steps)

    async def _promote(self) -> RolloutResult:
        plan, registry = self.plan, self.registry
        target = plan.target
        if target is not None:
            assert (
                registry is not None and plan.registry_name is not None and plan.registry_version is not None
            )
            name, version = plan.registry_name, plan.registry_version
            try:
                if plan.promote_alias:
                    await asyncio.to_thread(registry.set_alias, name, plan.promote_alias, version)
                else:
                    assert plan.promote_stage is not None
                    comment = (
                        f"rollout: {' -> '.join(f'{s.percent:g}%' for s in self.steps)} passed its guards"
                    )
                    await asyncio.to_thread(
                        registry.transition_stage, name, version, plan.promote_stage, True, comment
                    )
            except ModelyardError as exc:
                return await self._roll_back(f"the registry refused the promotion to {target}: {exc.message}")
        await self.deployment.promote(plan.name, plan.candidate)
        done = f"promoted to {target}" if target else "promoted (serving it)"
        await self._tag("state", f"{done}; version {self.current.version} drained")
        logger.info("Rolled out %s version %s: %s", plan.name, plan.candidate, done)
        return RolloutResult("promoted", None, self.steps)

    # -- the registry ---------------------------------------------------------------------------------------

    def check_gates(self) -> None:
        """Raise `GateFailed` if the registry's gates would refuse the promotion at the end (blocking; `run`
        checks too, so a command can check before it starts serving)."""
        plan, target = self.plan, self.plan.target
        if target is None or self.registry is None:
            return
        assert plan.registry_name is not None and plan.registry_version is not None
        checks = self.registry.check_gates(plan.registry_name, plan.registry_version, target)
        failed = [c for c in checks if not c.passed]
        if failed:
            reasons = "; ".join(f"`{c.rule}` failed: {c.detail}" for c in failed)
            raise GateFailed(
                f"{plan.registry_name!r} version {plan.registry_version} could not be promoted to {target} "
                f"at the end of the rollout, so it was not started: {reasons}."
            )

    async def _forget_last_rollout(self) -> None:
        """Remove the `rollout.*` tags of an earlier rollout of the same version (its events stay)."""
        plan = self.plan
        if self.registry is None or plan.registry_name is None:
            return
        registry, name, version = self.registry, plan.registry_name, plan.registry_version
        assert version is not None
        found = await asyncio.to_thread(registry.get_model_version, name, version)
        for key in found.tags:
            if key.startswith(TAG_PREFIX):
                await asyncio.to_thread(registry.store.delete_model_version_tag, name, version, key)

    async def _tag(self, key: str, value: str) -> None:
        if self.registry is not None and self.plan.registry_name is not None:
            await asyncio.to_thread(self._tag_now, key, value)

    def _tag_now(self, key: str, value: str) -> None:
        """Record `rollout.<key>` on the candidate's version; a registry that fails is logged, not fatal
        (the traffic decisions stand either way)."""
        plan = self.plan
        if self.registry is None or plan.registry_name is None:
            return
        try:
            self.registry.set_model_version_tag(
                plan.registry_name, plan.registry_version or 0, TAG_PREFIX + key, value
            )
        except Exception:
            logger.exception("Could not record %s%s on %s version %s", TAG_PREFIX, key, plan.registry_name,
                             plan.registry_version)  # fmt: skip


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


def format_duration(seconds: float) -> str:
    """`30 s`, `5 min`, `2 h`."""
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 5400:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def parse_duration(text: str) -> float:
    """Seconds from `30s`, `5m`, `1h`, `500ms` or a plain number of seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    value = text.strip().lower()
    for unit in sorted(units, key=len, reverse=True):
        if value.endswith(unit):
            number, scale = value[: -len(unit)], units[unit]
            break
    else:
        number, scale = value, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InvalidArgument(f"{text!r} is not a duration: write e.g. 30s, 5m, 1h or a number of seconds.")
    return seconds


def parse_fraction(text: str, what: str) -> float:
    """A fraction from `0.01` or `1%`."""
    value = text.strip()
    try:
        fraction = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        fraction = -1.0
    if not 0.0 <= fraction <= 1.0:
        raise InvalidArgument(f"{what} {text!r} is not a fraction: write e.g. 0.01 or 1%.")
    return fraction
