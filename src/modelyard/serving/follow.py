"""Following a registry alias or stage while serving: `models:/NAME@ALIAS` (also `models:/NAME/STAGE` and
`models:/NAME/latest`) names a different version once the alias moves, and the server follows it.

`AliasFollower.run()` polls the registry every `interval` seconds (a background task of the serving app).
When the URI names a new version, the follower loads it off the event loop, warms it with one prediction on
the model's saved input example (a version that cannot predict on its own example is not switched to),
then makes it the primary: it takes the requests at once, and only then is the old version drained (its
requests in flight and queued are answered) and closed. No request fails during the switch.

Polling rather than registry events: it works the same against the embedded store and a remote server,
costs one small query per interval, and a missed change is caught at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.schemas.registry import ModelVersion
from modelyard.serving.deployment import Deployment, ServedModel

logger = logging.getLogger(__name__)

Loader = Callable[[ModelVersion, ServedModel], ServedModel]
"""Loads a version (blocking, run in a thread) as a `ServedModel` served like the current primary (the
second argument: its name and batching limits)."""


def followable(uri: str) -> bool:
    """Whether `uri` can name another version later: an alias, a stage or `latest` (not a version number)."""
    from modelyard.registry.uris import parse_models_uri

    try:
        return parse_models_uri(uri).kind != "version"
    except InvalidArgument:
        return False


@dataclass(frozen=True)
class Switch:
    """One move of the followed URI: the version served before and after, or why it was not followed."""

    uri: str
    old_version: str
    new_version: str
    load_seconds: float
    error: str | None = None  # set when the new version was not switched to


class AliasFollower:
    """Keeps the primary of `name` on the version `uri` names.

    `load`: how to load a new version (default: `load_predictor` on `models:/NAME/VERSION`, `trusted` as
    given, with the current primary's batching limits). `on_switch` hears of every move, followed or not.
    """

    def __init__(
        self,
        deployment: Deployment,
        uri: str,
        *,
        name: str | None = None,
        interval: float = 5.0,
        trusted: bool = False,
        load: Loader | None = None,
        tracking_uri: str | None = None,
        on_switch: Callable[[Switch], None] | None = None,
    ) -> None:
        if not followable(uri):
            raise InvalidArgument(
                f"{uri!r} always names the same model: follow models:/NAME@ALIAS, models:/NAME/STAGE or "
                "models:/NAME/latest."
            )
        if interval <= 0:
            raise InvalidArgument(f"The follow interval must be positive, not {interval:g} s.")
        self.deployment, self.uri, self.interval = deployment, uri, interval
        self.name = name or deployment.models[0].name
        deployment.get(self.name)  # an unknown name fails now, not at the first move
        self.trusted, self.tracking_uri, self.on_switch = trusted, tracking_uri, on_switch
        self._load = load or self._load_version
        self._refused: str | None = None  # a version that failed to load: not retried until the URI moves

    async def run(self) -> None:
        """Poll until cancelled; a registry that cannot be reached is retried at the next poll."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except ModelyardError as exc:
                logger.warning("Could not look up %s (still serving the current version): %s", self.uri, exc)
            except Exception:
                logger.exception("Could not look up %s (still serving the current version)", self.uri)

    async def check(self) -> Switch | None:
        """Look the URI up once; switch if it names another version. The move, or None if it did not move."""
        from modelyard.registry.uris import model_version_for

        found = await asyncio.to_thread(model_version_for, self.uri, self.tracking_uri)
        version = str(found.version)
        current = self.deployment.get(self.name)
        if version == current.version or version == self._refused:
            return None
        started = time.perf_counter()
        try:
            if version in self.deployment.versions(self.name):
                await self.deployment.promote(self.name, version)  # served already (a canary, a shadow)
            else:
                model = await asyncio.to_thread(self._load_and_warm, found, current)
                await self.deployment.replace(model)
        except Exception as exc:
            self._refused = version
            message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            logger.error("Not following %s to version %s: %s", self.uri, version, message)
            switch = Switch(self.uri, current.version, version, time.perf_counter() - started, message)
        else:
            self._refused = None
            switch = Switch(self.uri, current.version, version, time.perf_counter() - started)
            logger.info("%s moved: now serving version %s (was %s)", self.uri, version, current.version)
        if self.on_switch is not None:
            self.on_switch(switch)
        return switch

    def _load_and_warm(self, found: ModelVersion, current: ServedModel) -> ServedModel:
        """Load a version and warm it (in a worker thread); a model that fails to warm up is closed."""
        model = self._load(found, current)
        try:
            warm_up(model, f"models:/{found.name}/{found.version}")
        except Exception:
            assert model.runner is not None
            model.runner.close()
            raise
        return model

    def _load_version(self, found: ModelVersion, current: ServedModel) -> ServedModel:
        from modelyard.models import load_predictor

        started = time.perf_counter()
        predictor = load_predictor(f"models:/{found.name}/{found.version}", trusted=self.trusted)
        load_seconds = time.perf_counter() - started
        return ServedModel(
            current.name, str(found.version), predictor, current.config, load_seconds=load_seconds
        )


def warm_up(model: ServedModel, uri: str) -> None:
    """Predict once on the model's saved input example, through its runner (first-call costs are paid
    before traffic arrives, in worker processes too); a model without an example is not warmed. Raises
    when the model fails on its own example."""
    from modelyard.models import load_input_example

    example = load_input_example(uri)
    if example is None:
        return
    assert model.runner is not None
    try:
        model.runner.predict(example)
    except Exception as exc:
        raise InvalidArgument(
            f"The model at {uri} fails on its own input example ({type(exc).__name__}: {exc})."
        ) from exc
