"""What one model server serves: model versions by name, each with its runner, batcher and batching limits,
and how requests reach them (primary, canary, shadows: see router.py), changeable while serving."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.models import ModelSignature
from modelyard.serving.batcher import BatchConfig, Batcher, Runner, ThreadRunner
from modelyard.serving.router import Router, Split

if TYPE_CHECKING:
    from modelyard.serving.metrics import ServingMetrics

logger = logging.getLogger(__name__)

ROLES = ("primary", "canary", "shadow", "version")
DRAIN_SECONDS = 60.0  # longest a version leaving waits for its requests in flight before it closes anyway
ChangeListener = Callable[[str, str, dict[str, Any]], None]
"""Told of each change of a deployment's routing: (kind, message, details); see `Deployment.changed`."""


@dataclass(eq=False)
class ServedModel:
    """One model version: `predictor` is a loaded `Predictor` (anything with `predict` and `signature`).

    `load_seconds`: how long loading the model took, if the caller measured it (exported as a metric).
    `role`: how the deployment serves it: `primary` answers the requests that name no version (the first
    primary of a name; later ones become `version`), `canary` takes a share of them, `shadow` gets a copy of
    each without answering, `version` only answers requests naming it. The deployment keeps it current
    (a promoted canary becomes `primary`, a drained version `retired`).
    """

    name: str
    version: str
    predictor: Any
    config: BatchConfig = field(default_factory=BatchConfig)
    runner: Runner | None = None
    load_seconds: float | None = None
    role: str = "primary"

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise InvalidArgument(f"A served model needs a name without '/': got {self.name!r}.")
        if self.role not in ROLES:
            raise InvalidArgument(f"A served model's role is one of {', '.join(ROLES)}; got {self.role!r}.")
        self.in_flight = 0  # requests routed to it and not answered yet (a version leaving waits for them)
        if self.runner is None:
            self.runner = ThreadRunner(self.predictor.predict, name=f"{self.name}-{self.version}")
        self.batcher = Batcher(self.runner, self.config, name=f"{self.name}/{self.version}")

    @property
    def signature(self) -> ModelSignature | None:
        return getattr(self.predictor, "signature", None)

    @property
    def platform(self) -> str:
        flavor = getattr(getattr(self.predictor, "flavor", None), "name", None)
        return f"modelyard_{flavor}" if flavor else "modelyard"

    @property
    def ready(self) -> bool:
        return not self.batcher.closing

    @property
    def replicas(self) -> int:
        assert self.runner is not None
        return self.runner.replicas


class Deployment:
    """The models a server answers for, and how requests reach them.

    Per name, the primary answers the requests that name no version, a canary takes `canary_percent` of
    them, and shadows get a copy of each (see router.py); any served version answers the requests naming
    it. While serving, versions can be added (`add`), re-weighted (`set_canary_percent`), promoted
    (`promote`, `replace`) and removed (`remove`): a version leaving is first taken out of the routing and
    only then drained (its requests in flight and queued are answered), so a change fails no request.
    """

    def __init__(self, models: Iterable[ServedModel], canary_percent: float = 0.0) -> None:
        self.router = Router()
        self.metrics: ServingMetrics | None = None  # set by the serving app (`attach_metrics`)
        self.listeners: list[ChangeListener] = []  # told of every change of the routing (see `changed`)
        self._versions: dict[str, dict[str, ServedModel]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        models = list(models)
        for model in models:
            self._serve(model)
        for model in models:
            if model.role == "primary":
                if model.name in self.router.splits:
                    model.role = "version"  # a second primary answers when named (as before roles)
                else:
                    self.router.splits[model.name] = Split(model)
        for model in models:
            if model.role in ("canary", "shadow"):
                self._attach(model)
        for split in self.router.splits.values():
            if split.canary is not None:
                split.percent = canary_percent
        if not self._versions:
            raise InvalidArgument("A deployment needs at least one model.")
        for name in self._versions:
            if name not in self.router.splits:
                raise InvalidArgument(
                    f"Model {name!r} has no primary version to answer requests naming none."
                )

    @classmethod
    def single(
        cls,
        predictor: Any,
        name: str,
        version: str = "1",
        config: BatchConfig | None = None,
        load_seconds: float | None = None,
    ) -> Deployment:
        return cls(
            [ServedModel(name, version, predictor, config or BatchConfig(), load_seconds=load_seconds)]
        )

    @property
    def models(self) -> list[ServedModel]:
        return [m for versions in self._versions.values() for m in versions.values()]

    def versions(self, name: str) -> list[str]:
        return list(self._find(name))

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The version named, or the name's primary (metadata, readiness: no traffic split involved)."""
        versions = self._find(name)
        if version is None:
            return self.router.splits[name].primary
        if version not in versions:
            raise NotFound(
                f"Model {name!r} has no version {version!r} here; served versions: {', '.join(versions)}."
            )
        return versions[version]

    def route(self, name: str, version: str | None = None) -> ServedModel:
        """The version to answer an inference request: the one named, else the split's choice."""
        if version is not None:
            return self.get(name, version)
        self._find(name)
        return self.router.splits[name].choose()

    def split(self, name: str) -> Split:
        """The name's primary, canary (and its share) and shadows."""
        self._find(name)
        return self.router.splits[name]

    @property
    def ready(self) -> bool:
        return all(m.ready for m in self.models)

    def attach_metrics(self, metrics: ServingMetrics) -> None:
        """Report to `metrics` (the serving app's): every served version's series, and shadow agreement."""
        self.metrics = self.router.metrics = metrics
        for model in self.models:
            metrics.model(model)  # every series shows from the start, at zero

    # -- changes while serving -------------------------------------------------------------------------------

    def add(self, model: ServedModel) -> None:
        """Serve one more version of a served name, in its role: a `canary` starts at 0% (see
        `set_canary_percent`), a `shadow` is mirrored at once, a `version` answers when named. To make it the
        primary, add it as a `version`, then `promote` it (or use `replace`)."""
        self._find(model.name)
        if model.role == "primary":
            raise InvalidArgument(
                f"{model.name!r} has a primary already: add version {model.version!r} as a canary, shadow "
                "or version, then promote it."
            )
        self._serve(model)
        self._attach(model)
        if self.metrics is not None:
            self.metrics.model(model)
        self.changed(
            "traffic_changed", f"now serving version {model.version} of {model.name} as {model.role}"
        )

    def set_canary_percent(self, name: str, percent: float) -> None:
        """Send `percent` of the requests to the name's canary (100: all of them), the rest to the primary."""
        split = self.split(name)
        if split.canary is None:
            raise InvalidArgument(f"Model {name!r} has no canary to send traffic to.")
        split.percent = percent
        self.changed("traffic_changed", f"canary version {split.canary.version} of {name} at {percent:g}%")

    def mirror(self, name: str, version: str) -> None:
        """Also send `version` a copy of the requests the other versions answer (a canary whose agreement
        with the primary is measured, as a rollout does); the requests routed to it it answers itself."""
        split, model = self.split(name), self.get(name, version)
        if model is split.primary:
            raise InvalidArgument(f"Version {version!r} is the primary of {name!r}; it cannot mirror itself.")
        if model not in split.shadows:
            split.shadows.append(model)

    async def promote(self, name: str, version: str) -> None:
        """Make a served version the name's primary: it takes the requests the old primary answered (and the
        canary's share, if it was the canary) at once; then the old primary is drained and closed."""
        split = self.split(name)
        new, old = self.get(name, version), split.primary
        if new is old:
            return
        if split.canary is new:
            split.canary = None
        if new in split.shadows:
            split.shadows.remove(new)
        split.primary, new.role = new, "primary"
        self.changed("promoted", f"version {new.version} of {name} answers in place of version {old.version}")
        await self._retire(old)

    async def replace(self, model: ServedModel) -> None:
        """Serve `model` as the primary of its name instead of the current one (which is drained after)."""
        model.role = "version"
        self.add(model)
        await self.promote(model.name, model.version)

    async def remove(self, name: str, version: str) -> None:
        """Stop serving a version that is not the primary: out of the routing at once, then drained."""
        model = self.get(name, version)
        if model is self.router.splits[name].primary:
            raise InvalidArgument(
                f"Version {version!r} is the primary of {name!r}: promote another version first."
            )
        await self._retire(model, f"stopped serving version {version} of {name}")

    async def close(self) -> None:
        """Drain every model's queue, then release the runners."""
        await asyncio.gather(*(m.batcher.close() for m in self.models), *list(self._retiring))
        await self.router.settle(timeout=10.0)  # shadows' answers, compared and logged

    def changed(self, kind: str, message: str, **details: Any) -> None:
        """Tell the listeners the routing changed: `kind` traffic_changed, promoted or rolled_back (a rollout
        says so), or note; a listener that fails is logged, never raised into the change."""
        for listener in self.listeners:
            try:
                listener(kind, message, details)
            except Exception:
                logger.exception("A deployment listener failed on %r", message)

    # -- internals -------------------------------------------------------------------------------------------

    def _find(self, name: str) -> dict[str, ServedModel]:
        versions = self._versions.get(name)
        if versions is None:
            raise NotFound(f"Unknown model {name!r}; this server serves: {', '.join(self._versions)}.")
        return versions

    def _serve(self, model: ServedModel) -> None:
        versions = self._versions.setdefault(model.name, {})
        if model.version in versions:
            raise InvalidArgument(f"Model {model.name!r} version {model.version!r} is served twice.")
        versions[model.version] = model

    def _attach(self, model: ServedModel) -> None:
        """Route to a canary or shadow (its name's primary is in place)."""
        split = self.router.splits.get(model.name)
        if split is None:
            raise InvalidArgument(f"Model {model.name!r} has a {model.role} but no primary version.")
        if model.role == "canary":
            if split.canary is not None:
                raise InvalidArgument(
                    f"Model {model.name!r} has a canary already (version {split.canary.version!r}); "
                    "remove it first."
                )
            split.canary, split.percent = model, 0.0
        elif model.role == "shadow":
            split.shadows.append(model)

    async def _retire(self, model: ServedModel, message: str | None = None) -> None:
        """Take `model` out of the routing now (`message`: tell the listeners), then drain it: wait for its
        requests in flight, answer its queue, close its runner."""
        split = self.router.splits[model.name]
        if split.canary is model:
            split.canary = None
        if model in split.shadows:
            split.shadows.remove(model)
        versions = self._versions[model.name]
        if versions.get(model.version) is model:
            del versions[model.version]
        model.role = "retired"
        if message is not None:
            self.changed("traffic_changed", message)
        task = asyncio.ensure_future(self._drain(model))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        await asyncio.shield(task)

    async def _drain(self, model: ServedModel) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while model.in_flight > 0 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if model.in_flight > 0:
            logger.warning(
                "Closing %s version %s with %d requests still in flight after %g s of draining.",
                model.name, model.version, model.in_flight, DRAIN_SECONDS,
            )  # fmt: skip
        await model.batcher.close()
        self.router.forget(model)
        if self.metrics is not None:
            self.metrics.forget(model)
