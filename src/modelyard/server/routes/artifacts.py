"""/api/v1/runs/{run_id}/artifacts and /artifact-uploads: the artifact proxy.

Clients read and write a run's artifacts through the server, which alone holds the storage credentials
(`modelyard.artifacts.http.HttpArtifactStore` is the client). Bodies stream with bounded memory:
downloads come from `ArtifactStore.open_read` in 1 MiB reads (with `Range`, so a dropped download
resumes), uploads go to a temp file in 1 MiB writes and then to `put_file`.

One request body holds at most `max_part_size` bytes: the smaller of `MAX_PART_SIZE` (64 MiB) and the
server's body limit (`--max-body-mb`, which the BodyLimit middleware enforces on every request). Bigger
files go up in parts through an upload session, kept on disk until `complete` assembles and stores them:

    POST   /runs/{id}/artifact-uploads                      {"path", "size", "part_size"?} -> session
    GET    /runs/{id}/artifact-uploads?path=                open sessions, to resume one
    GET    /runs/{id}/artifact-uploads/{upload_id}          the session and the parts it holds
    PUT    /runs/{id}/artifact-uploads/{upload_id}/parts/{n}    raw bytes; X-Content-SHA256 checked
    POST   /runs/{id}/artifact-uploads/{upload_id}/complete     {"sha256"?} -> the stored artifact
    DELETE /runs/{id}/artifact-uploads/{upload_id}          abandon it

Sessions live only in files under the staging folder (`MODELYARD_SERVER_UPLOAD_DIR`, default
`$MODELYARD_HOME/server-uploads`), so any worker process can take any part, and a server restart loses
nothing. Sessions untouched for `STALE_AFTER_S` are swept when a new one starts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from modelyard import config
from modelyard.artifacts import ArtifactStore, artifact_store_for, normalize_artifact_path
from modelyard.errors import Conflict, InvalidArgument, InvalidState, NotFound, PayloadTooLarge
from modelyard.schemas import LifecycleStage, Run
from modelyard.schemas.accounts import Role
from modelyard.schemas.artifacts import (
    MAX_PARTS,
    PART_SIZE,
    SHA256_HEADER,
    ArtifactList,
    CompleteUpload,
    StartUpload,
    StoredArtifact,
    UploadList,
    UploadPart,
    UploadSession,
)
from modelyard.server.app import error_response
from modelyard.server.authz import require
from modelyard.server.routes import ok, reply, store
from modelyard.store.validation import validate_run_id

router = APIRouter(prefix="/runs/{run_id}", tags=["artifacts"])

MAX_PART_SIZE = 64 * 2**20
STALE_AFTER_S = 7 * 24 * 3600
_CHUNK = 2**20
_SESSION, _DONE, _TMP = "session.json", "done.json", ".tmp-"
_PART = re.compile(r"^(\d{5})-([0-9a-f]{64})\.part$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
UploadId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]


# -- settings and lookups ----------------------------------------------------------------------------------


def staging_dir() -> Path:
    configured = os.environ.get("MODELYARD_SERVER_UPLOAD_DIR")
    return Path(configured).expanduser() if configured else config.home() / "server-uploads"


def max_part_size(request: Request) -> int:
    """The largest body one artifact request may carry: never above the server's body limit."""
    body_limit = int(request.app.state.settings.max_body_mb * 2**20)
    return max(1, min(MAX_PART_SIZE, body_limit))


def _run(request: Request, run_id: str, needed: Role = Role.READ) -> Run:
    """The run, once the caller is known to hold `needed` on its experiment (with auth on)."""
    s = store(request)
    run = s.get_run(validate_run_id(run_id))
    require(s, run.info.experiment_id, needed)
    return run


def _writable_run(request: Request, run_id: str) -> Run:
    run = _run(request, run_id, Role.EDIT)
    if run.info.lifecycle_stage == LifecycleStage.DELETED:
        raise InvalidState(f"Run {run_id} is deleted; restore it before writing artifacts to it.")
    return run


def _artifacts(run: Run) -> ArtifactStore:
    return artifact_store_for(run.info.artifact_uri)


def _file_rel(path: str) -> str:
    rel = normalize_artifact_path(path)
    if not rel:
        raise InvalidArgument("The artifact path names the run's artifact root, not a file.")
    return rel


# -- receiving a body ----------------------------------------------------------------------------------------


def _write(f: BinaryIO, digest: Any, data: bytearray) -> None:
    f.write(data)
    digest.update(data)


async def _receive(request: Request, dest: Path, limit: int, expected: int | None = None) -> tuple[int, str]:
    """Stream the request body into new file `dest`; its size and sha256. Disk writes leave the event loop."""
    too_big = (
        f"An artifact request carries at most {limit} bytes; send bigger files in parts "
        "(POST /api/v1/runs/<run_id>/artifact-uploads)."
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_big)
    if declared.isdigit() and expected is not None and int(declared) != expected:
        raise InvalidArgument(f"This part must be {expected} bytes, not {declared}.")
    digest = hashlib.sha256()
    size = 0
    buf = bytearray()
    with open(dest, "xb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(too_big)
            if expected is not None and size > expected:
                break
            buf += chunk
            if len(buf) >= _CHUNK:
                await anyio.to_thread.run_sync(_write, f, digest, buf)
                buf = bytearray()
        await anyio.to_thread.run_sync(_write, f, digest, buf)
    if expected is not None and size != expected:
        raise InvalidArgument(f"This part must be {expected} bytes; the request sent {size} or more.")
    sha256 = digest.hexdigest()
    claimed = request.headers.get(SHA256_HEADER)
    if claimed is not None and claimed.lower() != sha256:
        raise InvalidArgument(f"The body's sha256 is {sha256}, not {claimed}: it was damaged on the way.")
    return size, sha256


# -- upload sessions on disk -------------------------------------------------------------------------------


@dataclass
class _Session:
    """One upload session: `session.json`, parts `00001-<sha256>.part`, and `done.json` once stored."""

    dir: Path
    info: UploadSession

    @classmethod
    def start(cls, run_id: str, rel: str, size: int, part_size: int) -> _Session:
        upload_id = uuid.uuid4().hex
        folder = staging_dir() / run_id / upload_id
        folder.mkdir(parents=True)
        info = UploadSession(upload_id=upload_id, path=rel, size=size, part_size=part_size)
        _write_json(folder / _SESSION, info.model_dump_json())
        return cls(folder, info)

    @classmethod
    def load(cls, run_id: str, upload_id: str) -> _Session:
        folder = staging_dir() / run_id / upload_id
        try:
            info = UploadSession.model_validate_json((folder / _SESSION).read_bytes())
        except FileNotFoundError:
            raise NotFound(
                f"No upload {upload_id} for run {run_id} (finished long ago, or abandoned)."
            ) from None
        return cls(folder, info)

    @classmethod
    def open_sessions(cls, run_id: str) -> list[_Session]:
        folder = staging_dir() / run_id
        found = []
        for child in sorted(folder.iterdir()) if folder.is_dir() else ():
            try:
                found.append(cls.load(run_id, child.name))
            except NotFound:
                continue  # being created or removed right now
        return found

    def parts(self) -> dict[int, tuple[Path, str]]:
        """Part number -> (file, sha256); if two writers raced on one number, the newer file counts."""
        found: dict[int, tuple[Path, str, int]] = {}
        for entry in os.scandir(self.dir):
            m = _PART.match(entry.name)
            if m:
                number, mtime = int(m[1]), entry.stat().st_mtime_ns
                if number not in found or mtime >= found[number][2]:
                    found[number] = (Path(entry.path), m[2], mtime)
        return {n: (path, sha) for n, (path, sha, _) in found.items()}

    def view(self, max_part_size: int) -> UploadSession:
        parts = [
            UploadPart(number=n, size=path.stat().st_size, sha256=sha)
            for n, (path, sha) in sorted(self.parts().items())
        ]
        done = (self.dir / _DONE).exists()
        return self.info.model_copy(
            update={"parts": parts, "completed": done, "max_part_size": max_part_size}
        )

    def part_length(self, number: int) -> int:
        count = self.info.part_count
        if not 1 <= number <= count:
            raise InvalidArgument(f"Upload {self.info.upload_id} has parts 1 to {count}, not {number}.")
        return self.info.part_size if number < count else self.info.size - (count - 1) * self.info.part_size

    def temp(self) -> Path:
        return self.dir / f"{_TMP}{uuid.uuid4().hex}"

    def keep_part(self, number: int, sha256: str, tmp: Path) -> None:
        """Make a fully received part visible in one rename, replacing an older copy of that part."""
        for old in self.dir.glob(f"{number:05d}-*.part"):
            old.unlink(missing_ok=True)
        os.replace(tmp, self.dir / f"{number:05d}-{sha256}.part")

    def stored(self) -> StoredArtifact | None:
        try:
            return StoredArtifact.model_validate_json((self.dir / _DONE).read_bytes())
        except FileNotFoundError:
            return None

    def complete(self, artifacts: ArtifactStore, sha256: str | None) -> StoredArtifact:
        """Concatenate the parts, check the whole file, store it, then drop the parts (idempotent)."""
        done = self.stored()
        if done is not None:
            return done
        parts = self.parts()
        missing = [n for n in range(1, self.info.part_count + 1) if n not in parts]
        if missing:
            raise InvalidState(
                f"Upload {self.info.upload_id} lacks {len(missing)} of {self.info.part_count} parts "
                f"(first: {missing[:10]}); send them before completing."
            )
        tmp = self.temp()
        try:
            digest = _concatenate([parts[n][0] for n in sorted(parts)], tmp)
            if digest != sha256 and sha256 is not None:
                raise Conflict(
                    f"The assembled file's sha256 is {digest}, not {sha256}: a part changed meanwhile. "
                    "Upload the file again."
                )
            artifacts.put_file(tmp, self.info.path)
        except FileNotFoundError:  # another request completed this session while we read its parts
            done = self.stored()
            if done is None:
                raise Conflict(
                    f"Upload {self.info.upload_id} changed while it was being completed."
                ) from None
            return done
        finally:
            tmp.unlink(missing_ok=True)
        result = StoredArtifact(path=self.info.path, size=self.info.size, sha256=digest)
        _write_json(self.dir / _DONE, result.model_dump_json())
        for path, _ in parts.values():
            path.unlink(missing_ok=True)
        return result


def _write_json(dest: Path, text: str) -> None:
    tmp = dest.with_name(f"{_TMP}{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, dest)


def _concatenate(sources: list[Path], dest: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(dest, "xb") as out:
        for source in sources:
            with open(source, "rb") as f:
                while n := f.readinto(buf):
                    out.write(view[:n])
                    digest.update(view[:n])
    return digest.hexdigest()


def _sweep_stale(now: float) -> None:
    """Remove upload sessions and single-PUT temp files nobody touched for STALE_AFTER_S."""
    root = staging_dir()
    if not root.is_dir():
        return
    for entry in root.iterdir():
        sessions = list(entry.iterdir()) if entry.is_dir() else [entry]
        for item in sessions:
            try:
                if now - item.stat().st_mtime > STALE_AFTER_S:
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
            except FileNotFoundError:
                continue


# -- artifacts -------------------------------------------------------------------------------------------


@router.get("/artifacts", response_model=ArtifactList)
def list_artifacts(run_id: str, request: Request, path: str = "", recursive: bool = False) -> Response:
    """Direct children of folder `path` (sorted), or with `recursive=true` every file below it."""
    artifacts = _artifacts(_run(request, run_id))
    files = artifacts.list_recursive(path) if recursive else artifacts.list(path)
    return reply(ArtifactList(files=files))


@router.get(
    "/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses={206: {"description": "The byte range asked for"}, 416: {"description": "Bad range"}},
)
async def download_artifact(run_id: str, path: str, request: Request) -> Response:
    """The file's bytes, streamed; honours one `Range: bytes=first-[last]` so a broken download resumes."""
    asked = request.headers.get("range")

    def open_source() -> tuple[BinaryIO, int, tuple[int, int] | None, str | None]:
        source = _artifacts(_run(request, run_id)).open_read(_file_rel(path))
        try:
            size = source.seek(0, os.SEEK_END)
            etag = _etag(source)
            # If-Range: resume only the version the client started with; otherwise send it all (RFC 9110).
            if_range = request.headers.get("if-range")
            span = _byte_range(asked, size) if if_range is None or if_range == etag else None
            source.seek(span[0] if span else 0)
        except BaseException:
            source.close()
            raise
        return source, size, span, etag

    try:
        source, size, span, etag = await run_in_threadpool(open_source)
    except _Unsatisfiable as exc:
        message = f"Range {asked!r} is outside the artifact's {exc.size} bytes."
        response = error_response(InvalidArgument.code, message, 416)
        response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response
    first, last = span or (0, size - 1)
    headers = {"Content-Length": str(last - first + 1), "Accept-Ranges": "bytes"}
    if etag is not None:
        headers["ETag"] = etag
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(
        _read_chunks(source, last - first + 1),
        status_code=206 if span is not None else 200,
        headers=headers,
        media_type="application/octet-stream",
    )


def _etag(source: BinaryIO) -> str | None:
    """A strong validator of the file's version: inode, mtime and size of a local file (a replaced artifact
    is a new inode), the object's ETag on S3, GCS and other fsspec stores; None when the backend has neither."""
    try:
        st = os.fstat(source.fileno())
        return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'
    except (AttributeError, OSError, ValueError):
        pass
    try:
        details = getattr(source, "details", None)  # fsspec: the object's metadata (one HEAD on S3)
    except Exception:  # pragma: no cover - a backend whose metadata lookup fails: no validator
        return None
    etag = (details.get("ETag") or details.get("etag")) if isinstance(details, dict) else None  # S3, GCS
    if not etag or str(etag).startswith("W/"):
        return None
    return str(etag) if str(etag).startswith('"') else f'"{etag}"'  # GCS's JSON API gives it unquoted


class _Unsatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single-range `Range` header; None serves the whole file (RFC 9110 lets a
    server ignore a range it does not support, such as several ranges at once)."""
    m = _RANGE.match((header or "").strip())
    if m is None or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if not first:  # "bytes=-N": the last N bytes
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable(size)
        return max(0, size - int(last)), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise _Unsatisfiable(size)
    return int(first), min(int(last), size - 1) if last else size - 1


async def _read_chunks(source: BinaryIO, length: int) -> AsyncIterator[bytes]:
    try:
        while length > 0:
            chunk = await anyio.to_thread.run_sync(source.read, min(_CHUNK, length))
            if not chunk:
                break  # the file shrank: the client sees a short body and resumes (or learns it changed)
            length -= len(chunk)
            yield chunk
    finally:
        source.close()  # also when the client went away (closing a read handle does no I/O)


@router.put("/artifacts/{path:path}", response_model=StoredArtifact, openapi_extra=_BINARY_BODY)
async def upload_artifact(run_id: str, path: str, request: Request) -> Response:
    """Store the body as the file `path` (at most `max_part_size` bytes; bigger files go in parts)."""
    rel = _file_rel(path)
    run = await run_in_threadpool(_writable_run, request, run_id)
    root = staging_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"put-{uuid.uuid4().hex}.tmp"
    try:
        size, sha256 = await _receive(request, tmp, max_part_size(request))
        await run_in_threadpool(lambda: _artifacts(run).put_file(tmp, rel))
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; the temp file goes below
    finally:
        tmp.unlink(missing_ok=True)
    return reply(StoredArtifact(path=rel, size=size, sha256=sha256))


@router.delete("/artifacts")
def delete_all_artifacts(run_id: str, request: Request) -> dict[str, Any]:
    """Delete every artifact of the run."""
    _artifacts(_run(request, run_id, Role.EDIT)).delete("")
    return ok()


@router.delete("/artifacts/{path:path}")
def delete_artifact(run_id: str, path: str, request: Request) -> dict[str, Any]:
    """Delete a file or a whole folder; a missing path is not an error."""
    _artifacts(_run(request, run_id, Role.EDIT)).delete(path)
    return ok()


# -- upload sessions -------------------------------------------------------------------------------------


@router.post("/artifact-uploads", response_model=UploadSession, status_code=201)
def start_upload(run_id: str, body: StartUpload, request: Request) -> Response:
    """Open a session for a file of `size` bytes; the reply names the part size to use."""
    _writable_run(request, run_id)
    rel = _file_rel(body.path)
    limit = max_part_size(request)
    part_size = min(body.part_size or PART_SIZE, limit)
    if -(-body.size // part_size) > MAX_PARTS:
        raise InvalidArgument(
            f"{body.size} bytes would take more than {MAX_PARTS} parts of {part_size} bytes; "
            f"ask for parts of up to {limit} bytes."
        )
    _sweep_stale(time.time())
    session = _Session.start(run_id, rel, body.size, part_size)
    return reply(session.view(limit), 201)


@router.get("/artifact-uploads", response_model=UploadList)
def list_uploads(run_id: str, request: Request, path: str | None = None) -> Response:
    """The run's unfinished sessions (for `path` only, if given): what an interrupted client resumes."""
    _run(request, run_id)
    rel = None if path is None else _file_rel(path)
    limit = max_part_size(request)
    sessions = [s.view(limit) for s in _Session.open_sessions(run_id) if rel is None or s.info.path == rel]
    return reply(UploadList(uploads=[s for s in sessions if not s.completed]))


@router.get("/artifact-uploads/{upload_id}", response_model=UploadSession)
def get_upload(run_id: str, upload_id: UploadId, request: Request) -> Response:
    _run(request, run_id)
    return reply(_Session.load(run_id, upload_id).view(max_part_size(request)))


@router.put(
    "/artifact-uploads/{upload_id}/parts/{number}", response_model=UploadPart, openapi_extra=_BINARY_BODY
)
async def put_part(
    run_id: str,
    upload_id: UploadId,
    number: Annotated[int, PathParam(ge=1, le=MAX_PARTS)],
    request: Request,
) -> Response:
    """Part `number` of the upload (exactly `part_size` bytes, the last part the rest); replaces a resent part."""
    await run_in_threadpool(_writable_run, request, run_id)
    session = _Session.load(run_id, upload_id)
    if session.stored() is not None:
        raise Conflict(f"Upload {upload_id} is complete; start a new one to change {session.info.path!r}.")
    length = session.part_length(number)
    tmp = session.temp()
    try:
        size, sha256 = await _receive(request, tmp, max_part_size(request), expected=length)
        session.keep_part(number, sha256, tmp)
    except ClientDisconnect:
        return Response(status_code=400)  # a half-received part never becomes visible
    finally:
        tmp.unlink(missing_ok=True)
    return reply(UploadPart(number=number, size=size, sha256=sha256))


@router.post("/artifact-uploads/{upload_id}/complete", response_model=StoredArtifact)
def complete_upload(run_id: str, upload_id: UploadId, body: CompleteUpload, request: Request) -> Response:
    """Assemble the parts, check the whole file's sha256 and store it; repeating it returns the same result."""
    run = _writable_run(request, run_id)
    return reply(_Session.load(run_id, upload_id).complete(_artifacts(run), body.sha256))


@router.delete("/artifact-uploads/{upload_id}")
def abort_upload(run_id: str, upload_id: UploadId, request: Request) -> dict[str, Any]:
    _run(request, run_id, Role.EDIT)
    shutil.rmtree(staging_dir() / run_id / upload_id, ignore_errors=True)
    return ok()
