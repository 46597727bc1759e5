"""The artifact proxy through a real `modelyard server` process, with the artifacts on local disk, on a
real S3 server (SeaweedFS) and on a real GCS emulator (fake-gcs-server): the client holds no cloud
credentials or endpoints at all, only the server does.

Covered: the artifact store contract suite re-run against `HttpArtifactStore`, traversal refused by the
server itself, deleted runs refusing writes, uploads in parts that resume after an interruption (also
from a new store), downloads that resume with `Range`, a server with a small body limit, the RestStore
wiring (proxy by default, direct with MODELYARD_ARTIFACTS_DIRECT=1), and a big file that goes through
with bounded memory in the client (tracemalloc) and in the server process (peak RSS).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelyard.artifacts import artifact_store_for
from modelyard.artifacts.http import HttpArtifactStore
from modelyard.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from modelyard.schemas import Run
from modelyard.schemas.artifacts import UploadList, UploadSession
from modelyard.store.rest import RestStore

# The artifact store contract suite, run again here against HttpArtifactStore (through the server).
from tests.artifacts.test_artifact_store import (  # noqa: F401  (pytest collects these here)
    PeakMemory,
    terminal,
    test_big_transfers_show_progress,
    test_delete_file_and_missing_path,
    test_delete_subtree,
    test_download_file,
    test_download_folder_and_root,
    test_exists,
    test_folder_is_not_a_file,
    test_list_gives_direct_children_sorted,
    test_list_of_empty_store_is_empty,
    test_list_of_missing_path_or_file_is_empty,
    test_list_recursive,
    test_missing_file_is_not_found,
    test_overwrite_replaces_content,
    test_put_bytes_and_open_read_streams,
    test_put_dir,
    test_put_file_and_get_file,
    test_root_is_not_a_file,
    test_small_transfers_stay_silent,
    test_unicode_and_space_names,
    tree,
)
from tests.gcs_server import GCSServer, clear_gcs_env
from tests.s3_server import S3Server
from tests.server.live import LiveServer

SMALL_PART = 64 * 2**10  # tests of the parts protocol use small parts: many parts, little data
MEMORY_LIMIT = 60 * 2**20  # client heap growth allowed for a big transfer (as in tests/artifacts)
SERVER_RSS_LIMIT = 150 * 2**20  # growth of the server process's peak RSS allowed for a big transfer


# -- servers and credentials -------------------------------------------------------------------------------


def _s3_env(s3: S3Server) -> dict[str, str]:
    """What the `s3_bucket` fixture sets: the server process gets these, the test process does not."""
    return {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "MODELYARD_S3_ENDPOINT_URL": s3.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@dataclass
class Proxy:
    kind: str
    server: LiveServer
    artifacts_uri: str
    staging: Path
    s3: S3Server | None = None
    gcs: GCSServer | None = None

    def storage_env(self) -> dict[str, str]:
        """What a process needs to reach the storage directly ({} for a local folder)."""
        if self.s3 is not None:
            return _s3_env(self.s3)
        return self.gcs.env() if self.gcs is not None else {}

    def rest(self) -> RestStore:
        return RestStore(self.server.url, retries=2, backoff=0.01)

    def new_run(self) -> Run:
        rest = self.rest()
        try:
            return rest.create_run("0")
        finally:
            rest.close()


def _start_proxy(
    kind: str, root: Path, request: pytest.FixtureRequest
) -> tuple[LiveServer, str, S3Server | None, GCSServer | None]:
    """A LiveServer whose artifacts are in a folder or in a fresh bucket; only its process gets AWS_*
    (or the GCS endpoint)."""
    s3: S3Server | None = None
    gcs: GCSServer | None = None
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELYARD_SERVER_UPLOAD_DIR", str(root / "staging"))
        if kind == "s3":
            s3 = request.getfixturevalue("s3_server")
            bucket = f"proxy-{uuid.uuid4().hex[:12]}"
            s3.client().create_bucket(Bucket=bucket)
            for name, value in _s3_env(s3).items():
                env.setenv(name, value)
            artifacts = f"s3://{bucket}/artifacts"
        elif kind == "gcs":
            gcs = request.getfixturevalue("gcs_server")
            bucket = f"proxy-{uuid.uuid4().hex[:12]}"
            gcs.create_bucket(bucket)
            clear_gcs_env(env)
            for name, value in gcs.env().items():
                env.setenv(name, value)
            artifacts = f"gs://{bucket}/artifacts"
        else:
            artifacts = str(root / "artifacts")
        # LiveServer passes its artifacts root through str(): an s3:// string must not become a Path.
        server = LiveServer(f"sqlite:///{root / 'server.db'}", artifacts).start()
    return server, artifacts, s3, gcs


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("s3", marks=pytest.mark.s3), pytest.param("gcs", marks=pytest.mark.gcs)],
)
def proxy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """One server per backend for the module; every test works in a fresh run."""
    root = tmp_path_factory.mktemp(f"proxy-{request.param}")
    server, artifacts, s3, gcs = _start_proxy(request.param, root, request)
    try:
        yield Proxy(request.param, server, artifacts, root / "staging", s3, gcs)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def no_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process (the client) has no AWS credentials from any source botocore knows, and no GCS
    endpoint or Application Default Credentials."""
    clear_gcs_env(monkeypatch)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups either


@pytest.fixture
def run(proxy: Proxy) -> Run:
    return proxy.new_run()


@pytest.fixture
def http(proxy: Proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.server.url, timeout=30) as client:
        yield client


@pytest.fixture
def store(proxy: Proxy, run: Run, http: httpx.Client) -> HttpArtifactStore:
    """The contract suite's store: a run's artifacts through the proxy."""
    return HttpArtifactStore(http, run.info.run_id, run.info.artifact_uri, retries=2, backoff=0.01)


def _api(run: Run, suffix: str = "") -> str:
    return f"/api/v1/runs/{run.info.run_id}{suffix}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _stored_objects(proxy: Proxy, run: Run) -> list[str]:
    """The files under the run's artifact root as the storage itself lists them (keys on S3 and GCS)."""
    uri = run.info.artifact_uri
    if proxy.gcs is not None:
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        return [name[len(prefix) + 1 :] for name in proxy.gcs.object_names(bucket, prefix + "/")]
    if proxy.s3 is not None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        listed = proxy.s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        return sorted(o["Key"][len(prefix) + 1 :] for o in listed.get("Contents", []))
    root = Path(uri)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- credentials -----------------------------------------------------------------------------------------


def test_client_has_no_credentials_yet_reads_and_writes_through_the_server(
    proxy: Proxy, run: Run, store: HttpArtifactStore, tmp_path: Path
) -> None:
    import botocore.session

    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(os.environ)
    assert not {
        "GOOGLE_APPLICATION_CREDENTIALS",
        "MODELYARD_GCS_ENDPOINT_URL",
        "STORAGE_EMULATOR_HOST",
    } & set(os.environ)
    assert botocore.session.Session().get_credentials() is None
    store.put_bytes(b"through the proxy", "nested/deeper/note.txt")
    assert _stored_objects(proxy, run) == ["nested/deeper/note.txt"]  # really in the bucket / folder
    assert (
        store.download("nested", tmp_path).joinpath("deeper", "note.txt").read_bytes() == b"through the proxy"
    )
    if proxy.kind != "local":  # going to the storage directly is impossible from here
        with pytest.raises((Unauthenticated, PermissionDenied)):
            artifact_store_for(run.info.artifact_uri).list()


# -- the server's own checks -------------------------------------------------------------------------------

TRAVERSALS = ["%2E%2E/x", "a/%2E%2E/%2E%2E/x", "%2E%2E%5Cx", "a%2F..%2F..%2Fx", "%2Fetc%2Fpasswd"]


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_server_refuses_traversal(proxy: Proxy, run: Run, http: httpx.Client, bad: str) -> None:
    """Raw requests (a client without our path checks) cannot leave the run's root either."""
    responses = [
        http.put(_api(run, f"/artifacts/{bad}"), content=b"evil"),
        http.get(_api(run, f"/artifacts/{bad}")),
        http.delete(_api(run, f"/artifacts/{bad}")),
        http.get(_api(run, f"/artifacts?path={bad}")),
        http.get(_api(run, f"/artifact-uploads?path={bad}")),
        http.post(_api(run, "/artifact-uploads"), json={"path": httpx.URL(f"/{bad}").path[1:], "size": 4}),
    ]
    for response in responses:
        assert response.status_code == 400, response.text
        assert "relative path" in response.json()["message"]
    assert _stored_objects(proxy, run) == []


def test_unknown_run_and_bad_ids(proxy: Proxy, http: httpx.Client) -> None:
    missing = "f" * 32
    assert http.get(f"/api/v1/runs/{missing}/artifacts").status_code == 404
    assert http.put(f"/api/v1/runs/{missing}/artifacts/x.txt", content=b"x").status_code == 404
    assert http.get("/api/v1/runs/bad%20id/artifacts").status_code == 400
    run = proxy.new_run()
    assert http.get(_api(run, "/artifact-uploads/" + "0" * 32)).status_code == 404
    assert http.get(_api(run, "/artifact-uploads/..%2F..")).status_code in (400, 404)


def test_deleted_run_refuses_writes_but_serves_reads(
    proxy: Proxy, run: Run, store: HttpArtifactStore, tmp_path: Path
) -> None:
    store.put_bytes(b"kept", "kept.txt")
    session = _start_session(store, "big.bin", 3 * SMALL_PART)
    rest = proxy.rest()
    rest.delete_run(run.info.run_id)
    with pytest.raises(InvalidState, match="deleted"):
        store.put_bytes(b"late", "late.txt")
    with pytest.raises(InvalidState, match="deleted"):
        HttpArtifactStore(store._http, run.info.run_id, part_size=SMALL_PART).put_file(
            _random_file(tmp_path / "big.bin", 3 * SMALL_PART), "big.bin"
        )
    part = store._http.put(_api(run, f"/artifact-uploads/{session.upload_id}/parts/1"), content=b"x")
    assert part.status_code == 400 and part.json()["error_code"] == "INVALID_STATE"
    with store.open_read("kept.txt") as f:
        assert f.read() == b"kept"
    rest.restore_run(run.info.run_id)
    store.put_bytes(b"back", "late.txt")
    rest.close()
    assert _stored_objects(proxy, run) == ["kept.txt", "late.txt"]


# -- uploads in parts --------------------------------------------------------------------------------------


class Scripted(httpx.BaseTransport):
    """Real HTTP to the server, plus scripted trouble: refuse some requests, or cut one download short."""

    def __init__(self, refuse: Callable[[httpx.Request], bool] | None = None, cut_after: int | None = None):
        self._inner = httpx.HTTPTransport()
        self._refuse, self._cut_after = refuse, cut_after
        self.sent: list[tuple[str, str, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._refuse is not None and self._refuse(request):
            raise httpx.ConnectError("scripted: connection refused", request=request)
        self.sent.append((request.method, request.url.path, request.headers.get("range")))
        response = self._inner.handle_request(request)
        if self._cut_after is not None and request.method == "GET" and "/artifacts/" in request.url.path:
            assert isinstance(response.stream, httpx.SyncByteStream)
            response.stream = _CutStream(response.stream, self._cut_after)
            self._cut_after = None
        return response

    def close(self) -> None:
        self._inner.close()

    def parts_sent(self) -> list[int]:
        return [int(path.rsplit("/", 1)[1]) for method, path, _ in self.sent if "/parts/" in path]


class _CutStream(httpx.SyncByteStream):
    """A response body that breaks off after `limit` bytes, like a dropped connection."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self._inner, self._left = inner, limit

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if len(chunk) >= self._left:
                if self._left:
                    yield chunk[: self._left]
                raise httpx.ReadError("scripted: connection reset")
            self._left -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


def _client(proxy: Proxy | LiveServer, transport: httpx.BaseTransport) -> httpx.Client:
    server = proxy.server if isinstance(proxy, Proxy) else proxy
    return httpx.Client(base_url=server.url, transport=transport, timeout=30)


def _start_session(store: HttpArtifactStore, path: str, size: int) -> UploadSession:
    response = store._http.post(
        f"/api/v1/runs/{store.run_id}/artifact-uploads",
        json={"path": path, "size": size, "part_size": SMALL_PART},
    )
    assert response.status_code == 201, response.text
    return UploadSession.model_validate_json(response.content)


def _sessions(proxy: Proxy, run: Run, path: str) -> list[UploadSession]:
    with httpx.Client(base_url=proxy.server.url) as http:
        response = http.get(_api(run, "/artifact-uploads"), params={"path": path})
    return UploadList.model_validate_json(response.content).uploads


def test_interrupted_upload_resumes_from_the_parts_the_server_holds(
    proxy: Proxy, run: Run, tmp_path: Path
) -> None:
    size = 20 * SMALL_PART + 123  # 21 parts, the last one short
    src = _random_file(tmp_path / "model.bin", size)
    sent_parts = 0

    def drop_after_seven(request: httpx.Request) -> bool:
        nonlocal sent_parts
        if "/parts/" not in request.url.path:
            return False
        sent_parts += 1
        return sent_parts > 7  # the network goes away after 7 parts, retries included

    broken = Scripted(refuse=drop_after_seven)
    with _client(proxy, broken) as http:
        first = HttpArtifactStore(http, run.info.run_id, part_size=SMALL_PART, retries=2, backoff=0.01)
        with pytest.raises(Unavailable):
            first.put_file(src, "models/model.bin")
    assert broken.parts_sent() == list(range(1, 8))
    [session] = _sessions(proxy, run, "models/model.bin")
    assert [p.number for p in session.parts] == list(range(1, 8))
    assert session.part_count == 21 and not session.completed

    resumed = Scripted()
    with _client(proxy, resumed) as http:  # a new store, as after a restart of the client
        second = HttpArtifactStore(http, run.info.run_id, part_size=SMALL_PART)
        second.put_file(src, "models/model.bin")
        assert resumed.parts_sent() == list(range(8, 22))  # only what was missing
        second.get_file("models/model.bin", tmp_path / "back.bin")
        assert second.list("models")[0].file_size == size
    assert _sha256(tmp_path / "back.bin") == _sha256(src)
    assert _sessions(proxy, run, "models/model.bin") == []
    leftovers = [p for p in (proxy.staging / run.info.run_id).rglob("*") if p.suffix in (".part", ".tmp")]
    assert leftovers == []  # parts are gone once the file is stored


def test_resume_resends_parts_that_differ_from_the_local_file(
    proxy: Proxy, run: Run, store: HttpArtifactStore, tmp_path: Path
) -> None:
    size = 6 * SMALL_PART
    src = _random_file(tmp_path / "data.bin", size)
    session = _start_session(store, "data.bin", size)
    with open(src, "rb") as f:
        for number in (1, 2, 3):
            url = _api(run, f"/artifact-uploads/{session.upload_id}/parts/{number}")
            assert store._http.put(url, content=f.read(SMALL_PART)).status_code == 200
    with open(src, "r+b") as f:  # the local file changed in part 2 since that upload started
        f.seek(SMALL_PART + 10)
        f.write(b"changed")
    watch = Scripted()
    with _client(proxy, watch) as http:
        HttpArtifactStore(http, run.info.run_id, part_size=SMALL_PART).put_file(src, "data.bin")
    assert watch.parts_sent() == [2, 4, 5, 6]
    with store.open_read("data.bin") as f:
        assert hashlib.sha256(f.read()).hexdigest() == _sha256(src)


def test_upload_resumes_after_a_server_restart(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Upload sessions live only on disk: a new server process takes over the parts the old one got."""
    src = _random_file(tmp_path / "ckpt.bin", 5 * SMALL_PART)
    server, *_ = _start_proxy("local", tmp_path, request)
    try:
        run = Proxy("local", server, "", tmp_path / "staging").new_run()
        broken = Scripted(refuse=lambda r: r.url.path.endswith("/parts/3"))
        with _client(server, broken) as http, pytest.raises(Unavailable):
            HttpArtifactStore(http, run.info.run_id, part_size=SMALL_PART, retries=0).put_file(src, "c.bin")
    finally:
        server.stop()
    server, *_ = _start_proxy("local", tmp_path, request)  # same database, staging folder and artifacts
    try:
        watch = Scripted()
        with _client(server, watch) as http:
            store = HttpArtifactStore(http, run.info.run_id, part_size=SMALL_PART)
            store.put_file(src, "c.bin")
            assert watch.parts_sent() == [3, 4, 5]
            with store.open_read("c.bin") as f:
                assert hashlib.sha256(f.read()).hexdigest() == _sha256(src)
    finally:
        server.stop()


def test_empty_file_round_trip(store: HttpArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    store.put_file(tmp_path / "empty", "e/empty.txt")
    assert store.list("e")[0].file_size == 0
    store.get_file("e/empty.txt", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b""


def test_parts_protocol_checks(proxy: Proxy, run: Run, store: HttpArtifactStore) -> None:
    session = _start_session(store, "x.bin", 2 * SMALL_PART + 5)
    parts = _api(run, f"/artifact-uploads/{session.upload_id}")
    http = store._http
    data = os.urandom(SMALL_PART)
    damaged = http.put(f"{parts}/parts/1", content=data, headers={"X-Content-SHA256": "0" * 64})
    assert damaged.status_code == 400 and "damaged" in damaged.json()["message"]
    assert http.put(f"{parts}/parts/1", content=data[:-1]).status_code == 400  # wrong length
    assert http.put(f"{parts}/parts/4", content=b"x").status_code == 400  # no such part
    assert http.put(f"{parts}/parts/3", content=b"12345").status_code == 200
    incomplete = http.post(f"{parts}/complete", json={})
    assert incomplete.status_code == 400 and "lacks 2 of 3 parts" in incomplete.json()["message"]
    assert http.put(f"{parts}/parts/1", content=data).status_code == 200
    assert http.put(f"{parts}/parts/2", content=data).status_code == 200
    wrong = http.post(f"{parts}/complete", json={"sha256": "0" * 64})
    assert wrong.status_code == 409
    whole = hashlib.sha256(data + data + b"12345").hexdigest()
    done = http.post(f"{parts}/complete", json={"sha256": whole})
    assert done.json() == {"path": "x.bin", "size": 2 * SMALL_PART + 5, "sha256": whole}
    assert http.post(f"{parts}/complete", json={"sha256": whole}).json() == done.json()  # idempotent
    assert http.put(f"{parts}/parts/1", content=data).status_code == 409  # complete: no more parts
    assert http.get(parts).json()["completed"] is True
    assert http.delete(parts).status_code == 200
    assert http.get(parts).status_code == 404


def test_a_part_cut_off_mid_request_is_not_kept(proxy: Proxy, run: Run, store: HttpArtifactStore) -> None:
    session = _start_session(store, "cut.bin", 2 * SMALL_PART)

    def body() -> Iterator[bytes]:
        yield b"x" * (SMALL_PART // 2)
        raise ConnectionResetError("scripted: the client died mid-part")

    url = _api(run, f"/artifact-uploads/{session.upload_id}/parts/1")
    with pytest.raises((ConnectionResetError, httpx.TransportError)):
        store._http.put(url, content=body(), headers={"Content-Length": str(SMALL_PART)})
    deadline = time.monotonic() + 5
    folder = proxy.staging / run.info.run_id / session.upload_id
    while any(p.name.startswith(".tmp-") for p in folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server notices the disconnect asynchronously
    assert sorted(p.name for p in folder.iterdir()) == ["session.json"]
    assert _sessions(proxy, run, "cut.bin")[0].parts == []


def test_stale_sessions_are_swept(proxy: Proxy, run: Run, store: HttpArtifactStore) -> None:
    old = _start_session(store, "old.bin", 10)
    folder = proxy.staging / run.info.run_id / old.upload_id
    long_ago = time.time() - 8 * 24 * 3600
    os.utime(folder, (long_ago, long_ago))
    _start_session(store, "new.bin", 10)
    assert not folder.exists()


# -- downloads ---------------------------------------------------------------------------------------------


def test_range_requests(proxy: Proxy, run: Run, store: HttpArtifactStore) -> None:
    data = bytes(range(256)) * 4
    store.put_bytes(data, "r.bin")
    url = _api(run, "/artifacts/r.bin")
    http = store._http
    whole = http.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes" and whole.content == data
    for header, first, last in [
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-5", 1019, 1023),
    ]:
        part = http.get(url, headers={"Range": header})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes {first}-{last}/1024"
        assert part.content == data[first : last + 1]
    beyond = http.get(url, headers={"Range": "bytes=1024-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */1024"
    assert http.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200  # multi-range: all


def test_download_resumes_with_range_after_a_dropped_connection(
    proxy: Proxy, run: Run, store: HttpArtifactStore, tmp_path: Path
) -> None:
    src = _random_file(tmp_path / "src.bin", 3 * 2**20 + 7)
    store.put_file(src, "w/weights.bin")
    cut = Scripted(cut_after=2**20 + 5)
    with _client(proxy, cut) as http:
        HttpArtifactStore(http, run.info.run_id, backoff=0.01).get_file("w/weights.bin", tmp_path / "got.bin")
    assert _sha256(tmp_path / "got.bin") == _sha256(src)
    gets = [(path, rng) for method, path, rng in cut.sent if method == "GET"]
    url = _api(run, "/artifacts/w/weights.bin")
    assert gets == [(url, None), (url, f"bytes={2**20 + 5}-")]  # the rest only, after the drop
    cut = Scripted(cut_after=100)  # open_read resumes the same way
    with _client(proxy, cut) as http:
        reader = HttpArtifactStore(http, run.info.run_id, backoff=0.01).open_read("w/weights.bin")
        with reader as f:
            assert hashlib.sha256(f.read()).hexdigest() == _sha256(src)


@pytest.mark.parametrize("new_size", [200_000, 300_000], ids=["other-size", "same-size"])
def test_download_fails_cleanly_when_the_file_changes_midway(
    proxy: Proxy, run: Run, store: HttpArtifactStore, tmp_path: Path, new_size: int
) -> None:
    """A resume never splices two versions, even of the same size (If-Range with the ETag)."""
    store.put_bytes(b"a" * 300_000, "f.bin")

    class ReplaceThenCut(Scripted):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if len(self.sent) == 1:
                store.put_bytes(b"b" * new_size, "f.bin")  # replaced before the client comes back
            return response

    with (
        _client(proxy, ReplaceThenCut(cut_after=1000)) as http,
        pytest.raises(Conflict, match="changed while it was downloading"),
    ):
        HttpArtifactStore(http, run.info.run_id, backoff=0.01).get_file("f.bin", tmp_path / "f.bin")
    assert not (tmp_path / "f.bin").exists()


# -- wiring ------------------------------------------------------------------------------------------------


def test_rest_store_gives_the_proxy_by_default_and_storage_in_direct_mode(
    proxy: Proxy, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rest = proxy.rest()
    try:
        proxied = rest.artifact_store(run.info.run_id, run.info.artifact_uri)
        assert isinstance(proxied, HttpArtifactStore) and proxied._http is rest._http  # pooled connections
        assert proxied.root_uri == f"{proxy.server.url}/api/v1/runs/{run.info.run_id}/artifacts"
        proxied.put_bytes(b"via proxy", "p.txt")
        with pytest.raises(InvalidArgument, match="run id"):  # an id cannot turn into another URL
            rest.artifact_store("../../x", run.info.artifact_uri)
        monkeypatch.setenv("MODELYARD_ARTIFACTS_DIRECT", "1")
        direct = rest.artifact_store(run.info.run_id, run.info.artifact_uri)
        assert not isinstance(direct, HttpArtifactStore) and direct.root_uri == run.info.artifact_uri
        if proxy.kind == "local":
            assert direct.open_read("p.txt").read() == b"via proxy"
        else:  # direct mode needs the storage's credentials, which this process lacks
            with pytest.raises((Unauthenticated, PermissionDenied)):
                direct.open_read("p.txt")
            with pytest.MonkeyPatch.context() as env:
                for name, value in proxy.storage_env().items():
                    env.setenv(name, value)
                with rest.artifact_store(run.info.run_id, run.info.artifact_uri).open_read("p.txt") as f:
                    assert f.read() == b"via proxy"
    finally:
        rest.close()


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument with the TestClient")
def test_server_with_a_small_body_limit_takes_parts_of_the_size_it_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single PUT over the server's body limit is refused; the client then sends parts that fit."""
    from starlette.testclient import TestClient

    from modelyard.server import ServerSettings, create_app

    monkeypatch.setenv("MODELYARD_SERVER_UPLOAD_DIR", str(tmp_path / "staging"))
    app = create_app(
        ServerSettings(
            backend_store_uri=f"sqlite:///{tmp_path / 's.db'}",
            artifacts_uri=str(tmp_path / "a"),
            max_body_mb=1,
        )
    )
    src = _random_file(tmp_path / "three.bin", 3 * 2**20 + 1)
    with TestClient(app) as http:
        run_id = http.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"]
        too_big = http.put(f"/api/v1/runs/{run_id}/artifacts/x.bin", content=src.read_bytes())
        assert too_big.status_code == 413
        store = HttpArtifactStore(http, run_id)
        store.put_file(src, "three.bin")
        [upload] = [p for p in (tmp_path / "staging" / run_id).iterdir()]
        assert UploadSession.model_validate_json((upload / "session.json").read_bytes()).part_size == 2**20
        with store.open_read("three.bin") as f:
            assert hashlib.sha256(f.read()).hexdigest() == _sha256(src)


def test_openapi_lists_the_proxy_routes(proxy: Proxy, http: httpx.Client) -> None:
    paths = http.get("/api/v1/openapi.json").json()["paths"]
    assert "/api/v1/runs/{run_id}/artifacts/{path}" in paths
    assert "/api/v1/runs/{run_id}/artifact-uploads/{upload_id}/parts/{number}" in paths
    assert "application/octet-stream" in str(paths["/api/v1/runs/{run_id}/artifacts/{path}"]["put"])


# -- a big file, bounded memory on both sides --------------------------------------------------------------

BIG_MB = int(os.environ.get("MODELYARD_TEST_PROXY_BIG_MB", "300"))  # 1024 for the 1 GB check by hand


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")  # pragma: no cover


def _write_big(path: Path, size_mb: int) -> str:
    """A file whose every MiB differs (a lost or misplaced part changes the hash); its sha256."""
    digest = hashlib.sha256()
    block = bytearray(hashlib.sha256(b"seed").digest() * (2**20 // 32))
    with open(path, "wb") as f:
        for i in range(size_mb):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", [pytest.param("s3", marks=pytest.mark.s3), pytest.param("gcs", marks=pytest.mark.gcs)]
)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_big_file_through_object_storage_with_bounded_memory_on_both_sides(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server, *_ = _start_proxy(kind, tmp_path, request)  # a fresh server: its peak RSS is ours alone
    try:
        assert server.process is not None
        rest = RestStore(server.url)
        run = rest.create_run("0")
        store = rest.artifact_store(run.info.run_id, run.info.artifact_uri)
        src = tmp_path / "big.bin"
        digest = _write_big(src, BIG_MB)
        warm = _random_file(tmp_path / "warm.bin", 2 * 2**20)  # imports, pools, threads: not measured
        HttpArtifactStore(rest._http, run.info.run_id, part_size=2**20).put_file(warm, "warm.bin")
        store.get_file("warm.bin", tmp_path / "warm-back.bin")
        server_before = _peak_rss(server.process.pid)

        started = time.monotonic()
        with PeakMemory() as upload:
            store.put_file(src, "big/big.bin")
        uploaded = time.monotonic()
        with PeakMemory() as download:
            store.get_file("big/big.bin", tmp_path / "back.bin")
        downloaded = time.monotonic()
        server_growth = _peak_rss(server.process.pid) - server_before

        print(
            f"\n{BIG_MB} MiB through the proxy to {kind}: upload {uploaded - started:.1f} s, "
            f"download {downloaded - uploaded:.1f} s; client heap peak upload "
            f"{upload.growth / 2**20:.1f} MiB, download {download.growth / 2**20:.1f} MiB; "
            f"server peak RSS growth {server_growth / 2**20:.1f} MiB"
        )
        assert upload.growth < MEMORY_LIMIT, f"upload held {upload.growth / 2**20:.0f} MiB"
        assert download.growth < MEMORY_LIMIT, f"download held {download.growth / 2**20:.0f} MiB"
        assert server_growth < SERVER_RSS_LIMIT, f"server RSS grew {server_growth / 2**20:.0f} MiB"
        assert _sha256(tmp_path / "back.bin") == digest
        assert store.list("big")[0].file_size == BIG_MB * 2**20
        store.delete()
        rest.close()
    finally:
        server.stop()
        for name in ("big.bin", "back.bin"):
            (tmp_path / name).unlink(missing_ok=True)  # pytest keeps recent tmp folders
