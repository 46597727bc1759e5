"""`save_model`: write a model folder (model.yaml, the flavor's files, requirements, input example)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modelyard.errors import AlreadyExists, InvalidArgument
from modelyard.models import format, requirements, safety
from modelyard.models.flavors.base import Flavor, flavor_for, get_flavor
from modelyard.models.signature import infer_schema
from modelyard.schemas.models import ModelConfig, ModelSignature


def save_model(
    model: Any,
    path: str | Path,
    *,
    signature: ModelSignature | Mapping[str, Any] | bool | None = None,
    input_example: Any = None,
    requirements: Sequence[str] | str | Path | None = None,
    metadata: Mapping[str, Any] | None = None,
    flavor: str | Flavor | None = None,
    trusted: bool = True,
    run_id: str | None = None,
    artifact_path: str | None = None,
    **flavor_options: Any,
) -> ModelConfig:
    """Save `model` into the new or empty folder `path`; returns what model.yaml records.

    - `flavor`: a flavor name ("sklearn", "pytorch", ...) or instance; default: detected from the model.
    - `signature`: a `ModelSignature` (or its dict form), or False for none; default: inferred from
      `input_example` and the model's predictions for it (ONNX: read from the graph).
    - `requirements`: extra pip requirements (a list or a requirements file), added to the flavor's pinned
      packages; an entry replaces the inferred one of the same name.
    - `trusted`: count the files written here as trusted when this process loads them back (see safety).
    - `flavor_options`: passed to the flavor, e.g. `serialization="skops"` (sklearn) or "torchscript" (pytorch).
    """
    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AlreadyExists(f"{str(folder)!r} already exists and is not an empty folder; choose a new path.")
    chosen = get_flavor(flavor) if isinstance(flavor, str) else flavor or flavor_for(model)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        saved = chosen.save(model, folder, input_example=input_example, **flavor_options)
        flavor_config = {"loader": chosen.loader(), **saved}
        model_signature = _signature(chosen, model, signature, input_example)
        config = ModelConfig(
            format_version=format.FORMAT_VERSION,
            flavors={chosen.name: flavor_config},
            signature=model_signature,
            input_example=format.write_example(input_example, folder) if input_example is not None else None,
            requirements=_requirements(chosen, flavor_config, model_signature, requirements),
            metadata=dict(metadata or {}),
            created=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            modelyard_version=_modelyard_version(),
            run_id=run_id,
            artifact_path=artifact_path,
        )
        format.write_config(config, folder)
    except BaseException:  # no half-written model folder left behind
        _clear(folder, remove=created)
        raise
    if trusted:
        for name in flavor_config.get("files", []):
            safety.remember_written(folder / name)
    return config


def _clear(folder: Path, remove: bool) -> None:
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _signature(
    flavor: Flavor, model: Any, given: ModelSignature | Mapping[str, Any] | bool | None, example: Any
) -> ModelSignature | None:
    if given is False:
        return None
    if isinstance(given, ModelSignature):
        return given
    if isinstance(given, Mapping):
        return ModelSignature.model_validate(given)
    if given not in (None, True):
        raise InvalidArgument(
            f"signature must be a ModelSignature, a dict or False, not {type(given).__name__}."
        )
    if example is None:
        return flavor.default_signature(model)
    inputs = infer_schema(example)
    try:
        outputs = infer_schema(flavor.predict(flavor.prepare(model), example))
    except Exception as exc:  # the input signature still helps; say why the output one is missing
        warnings.warn(
            f"Could not infer the output signature: predicting on the input example failed ({exc}).",
            stacklevel=3,
        )
        outputs = None
    return ModelSignature(inputs=inputs, outputs=outputs)


def _requirements(
    flavor: Flavor,
    config: dict[str, Any],
    signature: ModelSignature | None,
    given: Sequence[str] | str | Path | None,
) -> list[str]:
    names = ["modelyard", *flavor.packages, *flavor.requirements(config), "numpy"]
    if signature is not None and signature.inputs is not None and signature.inputs.type == "dataframe":
        names.append("pandas")
    return requirements.merge(requirements.infer(names), given)


def _modelyard_version() -> str:
    from modelyard import __version__

    return __version__
