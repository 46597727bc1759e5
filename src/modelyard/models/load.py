"""`load_model` (the native object) and `load_predictor` (a uniform `predict`) for any model URI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument, NotFound
from modelyard.models import format, mlflow_compat, safety, uris
from modelyard.models.flavors.base import Flavor, flavor_targets, get_flavor
from modelyard.models.predictor import Predictor
from modelyard.schemas.models import ModelConfig


def load_model(uri: str | Path, *, trusted: bool = False, **options: Any) -> Any:
    """The model at `uri` as its library's own object (a scikit-learn estimator, a torch module, ...).

    `uri`: `runs:/<run_id>/<path>`, `models:/<name>/<version>` (or `@alias`, `/<Stage>`), a local folder,
    `file://...`, or an artifact URI such as `s3://bucket/path/model`. Models written by MLflow load too.
    `trusted=True` (or a prefix in MODELYARD_TRUSTED_MODEL_SOURCES) silences the `UnsafeModelWarning` for
    formats that run code while loading. `options` go to the flavor, e.g. `module=MyNet()` (pytorch: load
    only the weights into your module).
    """
    _, model, _ = _load(str(uri), trusted, options)
    return model


def load_predictor(uri: str | Path, *, trusted: bool = False, **options: Any) -> Predictor:
    """The model at `uri` behind `Predictor.predict(inputs)`; arguments as for `load_model`."""
    flavor, model, config = _load(str(uri), trusted, options)
    return Predictor(flavor, model, config, str(uri))


def read_model_config(uri: str | Path) -> ModelConfig:
    """What `model.yaml` (or an MLflow `MLmodel`) says about the model at `uri`, without loading it."""
    with uris.local_folder(str(uri)) as (folder, _):
        return _config(folder, str(uri))[0]


def load_input_example(uri: str | Path) -> Any:
    """The input example saved with the model at `uri` (None if it has none)."""
    with uris.local_folder(str(uri)) as (folder, _):
        config = _config(folder, str(uri))[0]
        if config.input_example is None:
            return None
        return format.read_example(folder / config.input_example)


@contextmanager
def fetched(uri: str | Path, *, trusted: bool = False) -> Iterator[tuple[Path, safety.Trust]]:
    """(a local folder with the model's files, the trust decision for `uri`), valid inside the block: a
    local model is used where it is, a remote one is downloaded into a temporary folder. Load from it with
    `load_fetched`, as often as needed (the model server's replicas fetch once and each load from there)."""
    with uris.local_folder(str(uri)) as (folder, resolved):
        yield folder, safety.Trust(trusted or safety.source_is_trusted(str(uri), resolved), source=str(uri))


def load_fetched(folder: Path, trust: safety.Trust, **options: Any) -> Predictor:
    """`load_predictor` for a folder from `fetched` (warnings and messages name `trust.source`)."""
    return Predictor(*_load_folder(folder, trust, options), trust.source)


def _load(uri: str, trusted: bool, options: dict[str, Any]) -> tuple[Flavor, Any, ModelConfig]:
    with fetched(uri, trusted=trusted) as (folder, trust):
        return _load_folder(folder, trust, options)


def _load_folder(
    folder: Path, trust: safety.Trust, options: dict[str, Any]
) -> tuple[Flavor, Any, ModelConfig]:
    config, flavor = _config(folder, trust.source)
    model = flavor.load(folder, config.flavors[flavor.name], trust, **options)
    return flavor, model, config


def _config(folder: Path, uri: str) -> tuple[ModelConfig, Flavor]:
    if (folder / format.MODEL_FILE).is_file():
        config = format.read_config(folder)
        return config, _installed_flavor(config, uri)
    if (folder / mlflow_compat.MLMODEL_FILE).is_file():
        return mlflow_compat.read(folder)
    raise NotFound(
        f"{uri!r} is not a model folder: it has no {format.MODEL_FILE} (nor an MLflow MLmodel file)."
    )


def _installed_flavor(config: ModelConfig, uri: str) -> Flavor:
    installed = flavor_targets()
    for name in config.flavors:
        if name in installed:
            return get_flavor(name)
    loaders = ", ".join(f"{n} ({c.get('loader', '?')})" for n, c in config.flavors.items())
    raise InvalidArgument(
        f"The model at {uri!r} needs a flavor that is not installed: {loaders}. Install the package that "
        "provides it (it registers itself in the 'modelyard.flavors' entry-point group)."
    )
