"""MLflow's artifact proxy (/api/2.0/mlflow-artifacts/artifacts/...): upload, download, list and delete,
streamed in chunks whatever the file size.

MLflow clients see `mlflow-artifacts:/<experiment_id>` as every experiment's artifact location and
`mlflow-artifacts:/<experiment_id>/<run_id>/artifacts` as every run's artifact URI; its client turns those
into requests here. We map such a path back to the run's (or the experiment's) real artifact root from the
store, so files land where Modelyard's own API reads them, whatever backend holds them.
"""

from __future__ import annotations

import mimetypes
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelyard.artifacts import ArtifactStore, artifact_store_for, normalize_artifact_path
from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.accounts import Role
from modelyard.server.authz import require
from modelyard.server.mlflow_compat.convert import run_artifact_uri
from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Store, experiment_id, reply
from modelyard.store.base import TrackingStore

router = APIRouter(prefix="/artifacts", route_class=MlflowRoute)
run_artifacts_router = APIRouter(prefix="/artifacts", route_class=MlflowRoute)  # under /api/2.0/mlflow
server_info_router = APIRouter(route_class=MlflowRoute)

_CHUNK = 2**20  # bytes per read/write: memory stays at about one chunk per transfer
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_PATH_HELP = "Artifact paths start with an experiment id, e.g. '1/<run_id>/artifacts/model.pkl'."


def resolve(
    s: TrackingStore, path: str, needed: Role = Role.READ, *, whole_root_ok: bool = True
) -> tuple[ArtifactStore, str]:
    """The artifact store holding `path` (`<experiment_id>/<run_id>/artifacts/<rel>` for a run's files,
    `<experiment_id>/<rel>` for other files of an experiment) and the path inside it, once the caller is
    known to hold `needed` on the experiment (with auth on)."""
    rel = normalize_artifact_path(path)  # refuses '..' and absolute paths before anything is looked up
    parts = rel.split("/") if rel else []
    if not parts:
        raise InvalidArgument(f"Artifact path {path!r} names no experiment. {_PATH_HELP}")
    if len(parts) >= 3 and _RUN_ID.match(parts[1]) and parts[2] == "artifacts":
        run = s.get_run(parts[1])
        if run.info.experiment_id != parts[0]:
            raise NotFound(f"Run {parts[1]} is not in experiment {parts[0]}.")
        require(s, run.info.experiment_id, needed)
        return artifact_store_for(run.info.artifact_uri), "/".join(parts[3:])
    exp = s.get_experiment(experiment_id(parts[0], "experiment id"))
    require(s, exp.experiment_id, needed)
    inner = "/".join(parts[1:])
    if not inner and not whole_root_ok:
        raise InvalidArgument(f"Refusing to delete every artifact of experiment {parts[0]} at once.")
    return artifact_store_for(exp.artifact_location), inner


@router.get("")
async def list_artifacts(s: Store, path: str = "") -> Response:
    """The direct children of folder `path`, by name (MLflow's client joins them onto `path` itself)."""
    source, rel = await run_in_threadpool(resolve, s, path)
    files = []
    for info in await run_in_threadpool(source.list, rel):
        entry: dict[str, object] = {"path": info.path.rsplit("/", 1)[-1], "is_dir": info.is_dir}
        if not info.is_dir and info.file_size is not None:
            entry["file_size"] = info.file_size
        files.append(entry)
    return reply({"files": files})


@run_artifacts_router.get("/list")
async def list_run_artifacts(p: Fields, s: Store) -> Response:
    """MLflow's older listing (`/api/2.0/mlflow/artifacts/list?run_id=&path=`): a run's files under `path`,
    each named by its path from the run's artifact root, in one page."""

    def listing() -> dict[str, object]:
        run = s.get_run(p.run_id())
        require(s, run.info.experiment_id, Role.READ)
        rel = normalize_artifact_path(p.string("path") or "")
        files = []
        for info in artifact_store_for(run.info.artifact_uri).list(rel):
            name = info.path.rsplit("/", 1)[-1]
            entry: dict[str, object] = {"path": f"{rel}/{name}" if rel else name, "is_dir": info.is_dir}
            if not info.is_dir and info.file_size is not None:
                entry["file_size"] = info.file_size
            files.append(entry)
        return {"root_uri": run_artifact_uri(run.info.experiment_id, run.info.run_id), "files": files}

    return reply(await run_in_threadpool(listing))


@router.get("/{path:path}")
async def download_artifact(path: str, s: Store) -> Response:
    source, rel = await run_in_threadpool(resolve, s, path)
    stream = await run_in_threadpool(source.open_read, rel)  # errors (missing, a folder) before any byte

    def chunks() -> Iterator[bytes]:
        try:
            while data := stream.read(_CHUNK):
                yield data
        finally:
            stream.close()

    media_type = mimetypes.guess_type(rel)[0] or "application/octet-stream"
    return StreamingResponse(chunks(), media_type=media_type)


@router.put("/{path:path}")
async def upload_artifact(path: str, request: Request, s: Store) -> Response:
    """The body goes to a temporary file chunk by chunk, then to the artifact store in one `put_file`."""
    target, rel = await run_in_threadpool(resolve, s, path, Role.EDIT)
    if not rel:
        raise InvalidArgument(f"Artifact path {path!r} names a folder; add the file name.")
    with tempfile.TemporaryDirectory(prefix="modelyard-upload-") as tmp:
        local = Path(tmp) / rel.rsplit("/", 1)[-1]
        with open(local, "wb") as out:
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= _CHUNK:  # write off the event loop, a chunk at a time
                    await run_in_threadpool(out.write, pending)
                    pending.clear()
            await run_in_threadpool(out.write, pending)
        await run_in_threadpool(target.put_file, local, rel)
    return reply({})


@router.delete("/{path:path}")
async def delete_artifact(path: str, s: Store) -> Response:
    """A file or a folder; a run's whole artifact root when `path` ends at `<run_id>/artifacts`."""
    target, rel = await run_in_threadpool(lambda: resolve(s, path, Role.EDIT, whole_root_ok=False))
    await run_in_threadpool(target.delete, rel)
    return reply({})


@server_info_router.get("/api/3.0/mlflow/server-info")
def server_info() -> Response:
    """What MLflow's client probes before big transfers: no multipart uploads/downloads, no workspaces."""
    return reply(
        {
            "store_type": None,
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }
    )
