"""What one model server serves: model versions by name, each with its runner, batcher and batching limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.models import ModelSignature
from modelyard.serving.batcher import BatchConfig, Batcher, Runner, ThreadRunner


@dataclass(eq=False)
class ServedModel:
    """One model version: `predictor` is a loaded `Predictor` (anything with `predict` and `signature`).

    `load_seconds`: how long loading the model took, if the caller measured it (exported as a metric).
    """

    name: str
    version: str
    predictor: Any
    config: BatchConfig = field(default_factory=BatchConfig)
    runner: Runner | None = None
    load_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise InvalidArgument(f"A served model needs a name without '/': got {self.name!r}.")
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
    """The models a server answers for. A request without a version goes to the name's default version (the
    first one added)."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self._versions: dict[str, dict[str, ServedModel]] = {}
        for model in models:
            versions = self._versions.setdefault(model.name, {})
            if model.version in versions:
                raise InvalidArgument(f"Model {model.name!r} version {model.version!r} is served twice.")
            versions[model.version] = model
        if not self._versions:
            raise InvalidArgument("A deployment needs at least one model.")

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
        versions = self._find(name)
        if version is None:
            return next(iter(versions.values()))
        if version not in versions:
            raise NotFound(
                f"Model {name!r} has no version {version!r} here; served versions: {', '.join(versions)}."
            )
        return versions[version]

    @property
    def ready(self) -> bool:
        return all(m.ready for m in self.models)

    async def close(self) -> None:
        """Drain every model's queue, then release the runners."""
        await asyncio.gather(*(m.batcher.close() for m in self.models))

    def _find(self, name: str) -> dict[str, ServedModel]:
        versions = self._versions.get(name)
        if versions is None:
            raise NotFound(f"Unknown model {name!r}; this server serves: {', '.join(self._versions)}.")
        return versions
