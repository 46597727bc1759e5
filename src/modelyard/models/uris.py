"""Where a model URI's files are: `models:/...` (through the registry), `runs:/<run_id>/<path>`, a local
folder or file:// URI, or any artifact URI an artifact store understands (s3://..., plugins).

Local folders, and runs whose artifacts are in a local folder, are read in place; anything else is
downloaded to a temporary folder that is removed once the model is loaded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from modelyard.artifacts import normalize_artifact_path
from modelyard.errors import InvalidArgument, NotFound


def resolve(uri: str) -> str:
    """`uri` with a `models:/` URI replaced by the artifact URI of the version it names."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"A model URI must be a non-empty string, not {uri!r}.")
    if uri.startswith("models:/"):
        from modelyard.registry.uris import resolve_model_uri

        return resolve_model_uri(uri)
    return uri


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """(run_id, artifact path) of `runs:/<run_id>/<path>`."""
    run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
    if not run_id:
        raise InvalidArgument(f"Cannot read {uri!r}: write runs:/<run_id>/<artifact path>.")
    return run_id, normalize_artifact_path(path)


@contextmanager
def local_folder(uri: str) -> Iterator[tuple[Path, str]]:
    """(a local folder holding the model's files, the resolved URI), valid inside the block."""
    resolved = resolve(uri)
    if resolved.startswith("runs:/"):
        with _run_folder(*parse_runs_uri(resolved)) as folder:
            yield folder, resolved
        return
    if len(urlsplit(resolved).scheme) <= 1 or resolved.startswith("file:"):
        from modelyard.artifacts.local import local_path_from_uri

        folder = local_path_from_uri(resolved)
        if not folder.is_dir():
            raise NotFound(f"No model folder at {resolved!r}.")
        yield folder, resolved
        return
    from modelyard.artifacts import artifact_store_for

    with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
        yield artifact_store_for(resolved).download("", tmp), resolved


@contextmanager
def _run_folder(run_id: str, path: str) -> Iterator[Path]:
    from modelyard.artifacts.local import LocalArtifactStore
    from modelyard.tracking import fluent

    store = fluent.get_client().artifact_store(run_id)
    if isinstance(store, LocalArtifactStore):
        folder = store.root.joinpath(*path.split("/")) if path else store.root
        if not folder.is_dir():
            raise NotFound(f"Run {run_id} has no model folder at {path!r}.")
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="modelyard-model-") as tmp:
        yield store.download(path, tmp)
