"""Artifacts through the Modelyard server (the artifact proxy): the client needs no storage credentials.

`HttpArtifactStore` speaks the routes of `modelyard.server.routes.artifacts`; the wire models both sides
use are defined here. Transfers stream with bounded memory whatever the file size:

- Files up to one part (`PART_SIZE`, 16 MiB) go up in one `PUT .../artifacts/<path>`.
- Bigger files go up in parts of `part_size` bytes through an upload session. A failed part is retried;
  an interrupted upload resumes from the parts the server already holds (it lists them with their
  sha256, so only parts whose content matches the local file are skipped), also from a new process.
- Downloads stream to a temp file beside the destination and continue with `Range: bytes=<n>-` after a
  dropped connection, so a 1 GB download that breaks at 900 MB fetches only the last 100 MB again.

Every part and single upload carries its sha256 (`X-Content-SHA256`), which the server checks; `complete`
checks the sha256 of the whole file, so a file assembled from stale or mixed parts is never stored.
"""

from __future__ import annotations

import builtins  # the `list` method shadows the builtin inside the class
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from modelyard.artifacts.base import ArtifactStore, normalize_artifact_path
from modelyard.artifacts.local import staged_file
from modelyard.artifacts.progress import TransferProgress
from modelyard.errors import Conflict, ModelyardError, PayloadTooLarge, Unavailable, error_for_code
from modelyard.schemas.artifacts import (
    MAX_PARTS,
    PART_SIZE,
    SHA256_HEADER,
    ArtifactList,
    CompleteUpload,
    FileInfo,
    StartUpload,
    StoredArtifact,
    UploadList,
    UploadSession,
)

RETRY_STATUSES = {502, 503, 504}
_CHUNK = 2**20


# -- the store -------------------------------------------------------------------------------------------------


class HttpArtifactStore(ArtifactStore):
    """The artifacts of run `run_id`, read and written through the Modelyard server behind `http`.

    `http` is an `httpx.Client` whose base URL is the server (RestStore's pooled client, so its
    keep-alive connections, token and User-Agent are reused). `artifact_uri` is where the server keeps
    the files; it is informational here, as the client never touches the storage itself.
    """

    def __init__(
        self,
        http: httpx.Client,
        run_id: str,
        artifact_uri: str | None = None,
        *,
        part_size: int = PART_SIZE,
        retries: int = 6,
        backoff: float = 0.25,
    ) -> None:
        from modelyard.store.validation import validate_run_id

        self._http = http
        self.run_id = validate_run_id(run_id)  # checked: a malformed id must not turn into another URL
        self.artifact_uri = artifact_uri
        self.part_size = part_size
        self._retries, self._backoff = retries, backoff
        self._base = f"/api/v1/runs/{self.run_id}"
        super().__init__(str(http.base_url).rstrip("/") + self._base + "/artifacts")

    def _url(self, rel: str) -> str:
        return f"{self._base}/artifacts/{quote(rel, safe='/')}" if rel else f"{self._base}/artifacts"

    # transport -----------------------------------------------------------------------------------------------
    def _retrying(self, send: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """`send()` until it answers: connection errors, timeouts and 502/503/504 are retried with backoff."""
        delay = self._backoff
        for attempt in range(self._retries + 1):
            last = attempt == self._retries
            try:
                response = send()
            except httpx.TransportError as exc:
                if last:
                    raise Unavailable(f"Cannot reach the Modelyard server for {what}: {exc}") from None
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    _raise_for_error(response)
                    return response
                response.close()
                delay = max(delay, _retry_after(response))
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(
        self, method: str, url: str, *, body: BaseModel | None = None, **kwargs: Any
    ) -> httpx.Response:
        if body is not None:
            kwargs["content"] = body.model_dump_json()
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        return self._retrying(lambda: self._http.request(method, url, **kwargs), f"{method} {url}")

    def _stream(self, url: str, headers: dict[str, str]) -> httpx.Response:
        """A GET whose body is not read yet (the caller closes it)."""
        request = self._http.build_request("GET", url, headers=headers)
        return self._retrying(lambda: self._http.send(request, stream=True), f"GET {url}")

    # reading -------------------------------------------------------------------------------------------------
    def _list(self, rel: str) -> builtins.list[FileInfo]:
        response = self._request("GET", f"{self._base}/artifacts", params={"path": rel})
        return ArtifactList.model_validate_json(response.content).files

    def list_recursive(self, path: str = "") -> builtins.list[FileInfo]:
        """Every file below `path` in one request (the server walks the tree next to the storage)."""
        params = {"path": normalize_artifact_path(path), "recursive": "true"}
        response = self._request("GET", f"{self._base}/artifacts", params=params)
        return ArtifactList.model_validate_json(response.content).files

    def _exists(self, rel: str) -> bool:
        return bool(self._list("")) if not rel else self._entry(rel) is not None

    def _open_read(self, rel: str) -> BinaryIO:
        return io.BufferedReader(_ResumingDownload(self, rel), buffer_size=_CHUNK)  # type: ignore[return-value]

    def _get_file(self, rel: str, local_path: Path) -> None:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        with (
            _ResumingDownload(self, rel) as source,  # opened first: a missing artifact leaves no temp file
            staged_file(local_path) as tmp,
            open(tmp, "xb") as out,
            TransferProgress(rel.rsplit("/", 1)[-1], total=source.size) as progress,
        ):
            while n := source.readinto(buf):
                out.write(view[:n])
                progress.advance(n)

    # writing -------------------------------------------------------------------------------------------------
    def _put_file(self, local_path: Path, rel: str) -> None:
        size = local_path.stat().st_size
        if size <= self.part_size:
            try:
                self._put_whole(local_path, rel, size)
                return
            except PayloadTooLarge:
                pass  # the server's body limit is below our part size: its upload session names one that fits
        self._put_parts(local_path, rel, size)

    def _put_whole(self, local_path: Path, rel: str, size: int) -> None:
        buf = bytearray(size)
        with open(local_path, "rb") as f:
            view = memoryview(buf)[: f.readinto(buf)]
        with TransferProgress(local_path.name, total=size) as progress:
            self._send(self._url(rel), view, hashlib.sha256(view).hexdigest())
            progress.advance(len(view))

    def _put_parts(self, local_path: Path, rel: str, size: int) -> None:
        session = self._resumable_session(rel, size)
        held = {p.number: p.sha256 for p in session.parts}
        uploads = f"{self._base}/artifact-uploads/{session.upload_id}"
        whole = hashlib.sha256()
        buf = bytearray(session.part_size)  # the one part in memory, reused for every part
        with open(local_path, "rb") as f, TransferProgress(local_path.name, total=size) as progress:
            for number in range(1, session.part_count + 1):
                view = memoryview(buf)[: f.readinto(buf)]
                whole.update(view)
                digest = hashlib.sha256(view).hexdigest()
                if held.get(number) != digest:  # the server lacks this part, or holds other bytes
                    self._send(f"{uploads}/parts/{number}", view, digest)
                progress.advance(len(view))
        # Assembling and storing takes a while for big files: allow for ~5 MiB/s on top of a minute.
        timeout = httpx.Timeout(30.0, read=60.0 + size / (5 * 2**20))
        body = CompleteUpload(sha256=whole.hexdigest())
        response = self._request("POST", f"{uploads}/complete", body=body, timeout=timeout)
        stored = StoredArtifact.model_validate_json(response.content)
        if stored.sha256 != whole.hexdigest() or stored.size != size:  # pragma: no cover - server checks too
            raise Conflict(f"The server stored {stored.size} bytes with sha256 {stored.sha256} for {rel!r}.")

    def _send(self, url: str, view: memoryview, sha256: str) -> None:
        """PUT `view` with its sha256, streamed from the caller's buffer (sent again from it on a retry).

        Not `content=bytes`: httpx keeps each request in a reference cycle until the garbage collector
        runs, which would keep every part of a big file alive. A generator holds only the shared buffer.
        """
        headers = {
            SHA256_HEADER: sha256,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(view)),
        }

        def send() -> httpx.Response:  # each attempt streams a new generator over the same buffer
            return self._http.request("PUT", url, content=_slices(view), headers=headers)

        self._retrying(send, f"PUT {url}")

    def _resumable_session(self, rel: str, size: int) -> UploadSession:
        """An open session for this file (left by an interrupted upload), or a new one."""
        uploads = f"{self._base}/artifact-uploads"
        listed = UploadList.model_validate_json(
            self._request("GET", uploads, params={"path": rel}).content
        ).uploads
        candidates = [s for s in listed if s.size == size and not s.completed]
        if candidates:
            return max(candidates, key=lambda s: len(s.parts))
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        body = StartUpload(path=rel, size=size, part_size=part_size)
        return UploadSession.model_validate_json(self._request("POST", uploads, body=body).content)

    def _delete(self, rel: str) -> None:
        self._request("DELETE", self._url(rel))


class _ResumingDownload(io.RawIOBase):
    """One artifact's bytes as a raw stream; a dropped connection continues with `Range: bytes=<pos>-`.

    A resume asks for the version it started reading (`If-Range` with the server's ETag) and checks the
    `Content-Range`: if the file was replaced meanwhile, the download fails with Conflict instead of
    splicing two versions together.
    """

    def __init__(self, store: HttpArtifactStore, rel: str) -> None:
        super().__init__()
        self._store, self._url, self._rel = store, store._url(rel), rel
        self.pos = 0
        self.size: int | None = None
        self._etag: str | None = None  # the version being read; a resume asks for that one (If-Range)
        self._failures = 0
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] = iter(())
        self._pending = memoryview(b"")
        self._connect()

    def _connect(self) -> None:
        self._release()
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        if self.pos and self._etag:
            headers["If-Range"] = self._etag  # a replaced file comes back whole (200), not as a range
        response = self._store._stream(self._url, headers)
        if self.pos:
            expected = f"bytes {self.pos}-{(self.size or 0) - 1}/{self.size}"
            if response.status_code != 206 or response.headers.get("content-range") != expected:
                got = response.headers.get("content-range") or f"HTTP {response.status_code}"
                response.close()
                raise Conflict(
                    f"Artifact {self._rel!r} changed while it was downloading (asked for {expected}, "
                    f"got {got}); download it again."
                )
        else:
            self._etag = response.headers.get("etag")
            if "content-length" in response.headers:
                self.size = int(response.headers["content-length"])
        self._response, self._chunks = response, response.iter_raw()

    def _release(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _resume(self, why: str) -> None:
        self._failures += 1
        if self.size is None or self._failures > self._store._retries:
            raise Unavailable(f"Download of artifact {self._rel!r} broke off at byte {self.pos}: {why}")
        time.sleep(min(self._store._backoff * 2 ** (self._failures - 1), 8.0))
        self._connect()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                if self.size is None or self.pos >= self.size:
                    return 0
                self._resume("the body ended early")
            except httpx.TransportError as exc:  # connection reset, read timeout, truncated body
                self._resume(str(exc) or type(exc).__name__)
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.pos += n
        self._failures = 0  # progress: the retry budget is per stall, not per download
        return n

    def close(self) -> None:
        self._release()
        super().close()


def _slices(view: memoryview) -> Iterator[bytes]:
    """`view` in 1 MiB slices, not copied (fine on the wire: h11 joins what it sends into bytes)."""
    for start in range(0, len(view), _CHUNK):
        yield cast(bytes, view[start : start + _CHUNK])


def _raise_for_error(response: httpx.Response) -> None:
    """Re-raise the server's error as the ModelyardError class its `error_code` names."""
    if response.is_success:
        return
    response.read()
    response.close()
    try:
        body = response.json()
        code, message = body["error_code"], body["message"]
    except Exception:
        code = "INTERNAL_ERROR"
        message = f"HTTP {response.status_code} from {response.request.url}: {response.text[:300]}"
    if response.status_code in RETRY_STATUSES:
        raise Unavailable(message)
    cls: type[ModelyardError] = PayloadTooLarge if response.status_code == 413 else error_for_code(code)
    raise cls(message)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), 30.0)
    except ValueError:
        return 0.0
