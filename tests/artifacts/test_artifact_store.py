"""One contract suite for every artifact store backend: a local folder, S3 (a real SeaweedFS server) and
GCS (a real fake-gcs-server emulator).

Plus the pieces around the stores: backend choice by URI scheme, `join_uri`, the progress helper,
bounded memory for big transfers, and a light `import modelyard.artifacts`.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import httpx
import pytest
from gcsfs.retry import HttpError

from modelyard.artifacts import ArtifactStore, artifact_store_for, join_uri, normalize_artifact_path
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.artifacts.progress import TransferProgress
from modelyard.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated, Unavailable
from modelyard.schemas.artifacts import FileInfo
from tests.gcs_server import GCSServer, clear_gcs_env
from tests.s3_server import S3Server

if TYPE_CHECKING:
    from rich.console import Console

RUN_ROOT = "0/run1/artifacts"  # where the store under test lives inside its container (folder or bucket)
BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.s3), pytest.param("gcs", marks=pytest.mark.gcs)]


@dataclass
class Backend:
    """The store under test plus its container, to check that nothing lands outside the store's root."""

    name: str
    container_uri: str

    @property
    def root_uri(self) -> str:
        return join_uri(self.container_uri, RUN_ROOT)

    def store(self) -> ArtifactStore:
        return artifact_store_for(self.root_uri)

    def container(self) -> ArtifactStore:
        return artifact_store_for(self.container_uri)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", (tmp_path / "container").as_uri())
    if request.param == "gcs":
        return Backend("gcs", request.getfixturevalue("gcs_bucket"))
    return Backend("s3", request.getfixturevalue("s3_bucket"))


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.store()


@pytest.fixture
def tree(store: ArtifactStore) -> ArtifactStore:
    """A store holding a/b/c.txt, a/d.txt and top.txt."""
    store.put_bytes(b"hello", "a/b/c.txt")
    store.put_bytes(b"dd", "a/d.txt")
    store.put_bytes(b"top", "top.txt")
    return store


def _dir(path: str) -> FileInfo:
    return FileInfo(path=path, is_dir=True)


def _file(path: str, size: int) -> FileInfo:
    return FileInfo(path=path, is_dir=False, file_size=size)


# -- the contract ----------------------------------------------------------------------------------------


def test_put_file_and_get_file(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    store.put_file(src, "model/weights.bin")
    store.get_file("model/weights.bin", tmp_path / "out" / "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == src.read_bytes()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "w.bin"]  # no temp file left behind


def test_put_bytes_and_open_read_streams(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 4096
    store.put_bytes(data, "blob.bin")
    with store.open_read("blob.bin") as f:
        chunks = iter(lambda: f.read(10_000), b"")
        assert b"".join(chunks) == data


def test_list_gives_direct_children_sorted(tree: ArtifactStore) -> None:
    assert tree.list() == [_dir("a"), _file("top.txt", 3)]
    assert tree.list("a") == [_dir("a/b"), _file("a/d.txt", 2)]
    assert tree.list("a/b/") == [_file("a/b/c.txt", 5)]
    assert tree.list("./a//b") == [_file("a/b/c.txt", 5)]


def test_list_of_missing_path_or_file_is_empty(tree: ArtifactStore) -> None:
    assert tree.list("missing") == []
    assert tree.list("a/missing/deeper") == []
    assert tree.list("top.txt") == []


def test_list_of_empty_store_is_empty(store: ArtifactStore) -> None:
    assert store.list() == []
    assert store.list_recursive() == []


def test_list_recursive(tree: ArtifactStore) -> None:
    assert tree.list_recursive() == [_file("a/b/c.txt", 5), _file("a/d.txt", 2), _file("top.txt", 3)]
    assert tree.list_recursive("a/b") == [_file("a/b/c.txt", 5)]


def test_download_file(tree: ArtifactStore, tmp_path: Path) -> None:
    local = tree.download("a/b/c.txt", tmp_path / "dl")
    assert local == tmp_path / "dl" / "a" / "b" / "c.txt"
    assert local.read_bytes() == b"hello"


def test_download_folder_and_root(tree: ArtifactStore, tmp_path: Path) -> None:
    folder = tree.download("a", tmp_path / "one")
    assert folder == tmp_path / "one" / "a"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "b/c.txt",
        "d.txt",
    ]
    root = tree.download("", tmp_path / "all")
    assert root == tmp_path / "all"
    assert (root / "top.txt").read_bytes() == b"top"
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"hello"


def test_put_dir(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "x.txt").write_bytes(b"x")
    (src / "sub" / "deeper" / "y.txt").write_bytes(b"yy")
    store.put_dir(src, "data")
    store.put_dir(src)
    assert [f.path for f in store.list_recursive()] == [
        "data/sub/deeper/y.txt",
        "data/x.txt",
        "sub/deeper/y.txt",
        "x.txt",
    ]


def test_delete_subtree(tree: ArtifactStore) -> None:
    tree.delete("a/b")
    assert tree.list("a") == [_file("a/d.txt", 2)]
    assert not tree.exists("a/b")
    tree.delete("a")
    assert tree.list() == [_file("top.txt", 3)]


def test_delete_file_and_missing_path(tree: ArtifactStore) -> None:
    tree.delete("top.txt")
    assert not tree.exists("top.txt")
    tree.delete("never/there")  # deleting what is not there is not an error
    assert [f.path for f in tree.list_recursive()] == ["a/b/c.txt", "a/d.txt"]


def test_delete_root(backend: Backend, tree: ArtifactStore) -> None:
    sibling = artifact_store_for(join_uri(backend.container_uri, "0/run2/artifacts"))
    sibling.put_bytes(b"keep", "keep.txt")
    tree.delete()
    assert tree.list() == []
    assert not tree.exists("")
    assert sibling.list() == [_file("keep.txt", 4)]


def test_exists(tree: ArtifactStore) -> None:
    assert tree.exists("")
    assert tree.exists("a")
    assert tree.exists("a/b/c.txt")
    assert not tree.exists("a/c.txt")
    assert not tree.exists("nothing")


def test_overwrite_replaces_content(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes(b"first version", "f.txt")
    store.put_bytes(b"second", "f.txt")
    assert store.list() == [_file("f.txt", 6)]
    store.get_file("f.txt", tmp_path / "f.txt")
    assert (tmp_path / "f.txt").read_bytes() == b"second"


@pytest.mark.parametrize(
    "name", ["données/mon fichier ü.txt", "with space.txt", "emoji 🚀 ok/日本語.bin", "50%25 off+plus.txt"]
)
def test_unicode_and_space_names(store: ArtifactStore, tmp_path: Path, name: str) -> None:
    store.put_bytes(b"content", name)
    assert store.exists(name)
    assert [f.path for f in store.list_recursive()] == [name]
    assert store.download(name, tmp_path / "dl").read_bytes() == b"content"
    with store.open_read(name) as f:
        assert f.read() == b"content"


def test_missing_file_is_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        store.get_file("nope.txt", tmp_path / "nope.txt")
    with pytest.raises(NotFound):
        store.open_read("nope.txt")
    with pytest.raises(NotFound):
        store.download("nope", tmp_path)
    with pytest.raises(NotFound):
        store.put_file(tmp_path / "no-such-local-file", "x.txt")
    assert not (tmp_path / "nope.txt").exists()


def test_folder_is_not_a_file(tree: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="folder"):
        tree.get_file("a/b", tmp_path / "x")
    with pytest.raises(InvalidArgument, match="folder"):
        tree.open_read("a")
    assert not (tmp_path / "x").exists()


BAD_PATHS = [
    "../x",
    "/etc/passwd",
    "a/../../b",
    "..",
    "a/..",
    "C:\\x",
    "c:x",
    "\\\\server\\share\\x",
    "..\\x",
    "x\0y",
]


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_path_traversal_refused(backend: Backend, store: ArtifactStore, tmp_path: Path, bad: str) -> None:
    neighbour = artifact_store_for(join_uri(backend.container_uri, "0/run1"))
    neighbour.put_bytes(b"secret", "x")  # what "../x" would name
    src = tmp_path / "local.txt"
    src.write_bytes(b"evil")
    calls: list[Callable[[], object]] = [
        lambda: store.put_file(src, bad),
        lambda: store.put_bytes(b"evil", bad),
        lambda: store.put_dir(tmp_path, bad),
        lambda: store.get_file(bad, tmp_path / "got"),
        lambda: store.open_read(bad),
        lambda: store.list(bad),
        lambda: store.list_recursive(bad),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
        lambda: store.download(bad, tmp_path / "dl"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="relative path"):
            call()
    assert [f.path for f in backend.container().list_recursive()] == ["0/run1/x"]  # untouched, nothing new
    assert not (tmp_path / "got").exists()


def test_root_is_not_a_file(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="root"):
        store.put_bytes(b"x", "")
    with pytest.raises(InvalidArgument, match="root"):
        store.get_file("./", tmp_path / "x")


# -- progress bars in the backends --------------------------------------------------------------------------


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Make progress bars draw (into the returned buffer) for anything over 0.5 MiB."""
    from rich.console import Console

    from modelyard.artifacts import progress

    out = io.StringIO()
    monkeypatch.setattr(
        progress, "_stderr_console", lambda: Console(file=out, force_terminal=True, width=100)
    )
    monkeypatch.setenv("MODELYARD_PROGRESS_THRESHOLD_MB", "0.5")
    return out


def test_big_transfers_show_progress(store: ArtifactStore, tmp_path: Path, terminal: io.StringIO) -> None:
    src = tmp_path / "big-upload.bin"
    src.write_bytes(b"x" * (2 * 2**20))
    store.put_file(src, "big.bin")
    assert "big-upload.bin" in terminal.getvalue()
    store.get_file("big.bin", tmp_path / "back.bin")
    assert terminal.getvalue().count("big.bin") >= 1
    assert "2.1 MB" in terminal.getvalue()  # rich's DownloadColumn: total bytes


def test_small_transfers_stay_silent(store: ArtifactStore, tmp_path: Path, terminal: io.StringIO) -> None:
    store.put_bytes(b"x" * 1000, "small.bin")
    store.get_file("small.bin", tmp_path / "small.bin")
    assert terminal.getvalue() == ""


def _console(out: io.StringIO, terminal: bool) -> Console:
    from rich.console import Console

    return Console(file=out, force_terminal=terminal, width=100)


def test_progress_draws_a_bar_on_a_terminal_above_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PROGRESS_THRESHOLD_MB", "1")
    out = io.StringIO()
    with TransferProgress("weights.bin", total=3 * 2**20, console=_console(out, terminal=True)) as progress:
        assert progress.visible
        for _ in range(3):
            progress.advance(2**20)
    assert progress.completed == 3 * 2**20
    text = out.getvalue()
    assert "weights.bin" in text
    assert "3.1/3.1 MB" in text  # bytes done / total
    assert "━" in text  # the bar


def test_progress_is_silent_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PROGRESS_THRESHOLD_MB", "1")
    out = io.StringIO()
    with TransferProgress("w.bin", total=3 * 2**20, console=_console(out, terminal=False)) as progress:
        progress.advance(3 * 2**20)
    assert not progress.visible
    assert out.getvalue() == ""


def test_progress_is_silent_below_the_threshold_or_without_a_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PROGRESS_THRESHOLD_MB", "1")
    out = io.StringIO()
    for total in (2**20, None):  # at the threshold is not above it
        with TransferProgress("w.bin", total=total, console=_console(out, terminal=True)) as progress:
            progress.advance(2**20)
        assert not progress.visible
    assert out.getvalue() == ""


def test_progress_starts_when_the_size_arrives_late(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_PROGRESS_THRESHOLD_MB", "1")
    out = io.StringIO()
    with TransferProgress("w.bin", console=_console(out, terminal=True)) as progress:
        progress.advance(10)
        progress.set_total(2 * 2**20)  # s3fs reports the size with the first response
        assert progress.visible
    assert "w.bin" in out.getvalue()


# -- big files stream with bounded memory ---------------------------------------------------------------------

BIG_SIZE = 200 * 2**20
MEMORY_LIMIT = 60 * 2**20


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A 200 MiB file whose every MiB differs (a lost or misplaced part changes the hash), and its sha256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    digest = hashlib.sha256()
    block = bytearray(hashlib.sha256(b"seed").digest() * (2**20 // 32))
    with open(path, "wb") as f:
        for i in range(BIG_SIZE // 2**20):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)
            digest.update(block)
    yield path, digest.hexdigest()
    path.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


class PeakMemory:
    """Peak Python heap growth while in the block (all threads, incl. s3fs's event loop).

    tracemalloc sees every bytes/bytearray buffer, so reading a whole file into memory shows up at
    its full size however much RSS earlier tests already used (test_probe_sees_whole_file_reads
    proves it).
    """

    def __enter__(self) -> PeakMemory:
        tracemalloc.start()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = tracemalloc.get_traced_memory()[1] - self._base
        tracemalloc.stop()


@pytest.mark.slow
def test_probe_sees_whole_file_reads(big_file: tuple[Path, str]) -> None:
    with PeakMemory() as probe:
        data = big_file[0].read_bytes()
        del data
    assert probe.growth > BIG_SIZE


@pytest.mark.slow
def test_big_file_streams_with_bounded_memory(
    backend: Backend, store: ArtifactStore, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, digest = big_file
    store.put_bytes(b"warm up", "warmup.txt")  # connection pools, imports: not what we measure
    with PeakMemory() as upload:
        store.put_file(path, "big/big.bin")
    with PeakMemory() as download:
        store.get_file("big/big.bin", tmp_path / "big.bin")
    assert upload.growth < MEMORY_LIMIT, f"upload held {upload.growth / 2**20:.0f} MiB"
    assert download.growth < MEMORY_LIMIT, f"download held {download.growth / 2**20:.0f} MiB"
    assert _sha256(tmp_path / "big.bin") == digest
    assert store.list("big") == [_file("big/big.bin", BIG_SIZE)]
    with PeakMemory() as read, store.open_read("big/big.bin") as f:
        digest_read = hashlib.sha256()
        while chunk := f.read(2**20):
            digest_read.update(chunk)
    assert digest_read.hexdigest() == digest
    assert read.growth < MEMORY_LIMIT, f"open_read held {read.growth / 2**20:.0f} MiB"
    store.delete()  # pytest keeps recent tmp folders: do not leave 400 MB behind per run
    (tmp_path / "big.bin").unlink()


@pytest.mark.s3
@pytest.mark.slow
def test_big_s3_upload_is_multipart(s3_server: S3Server, s3_bucket: str, big_file: tuple[Path, str]) -> None:
    from modelyard.artifacts.s3 import PART_SIZE

    store = artifact_store_for(f"{s3_bucket}/runs/r1")
    store.put_file(big_file[0], "big.bin")
    head = s3_server.client().head_object(Bucket=s3_bucket.removeprefix("s3://"), Key="runs/r1/big.bin")
    parts = -(-BIG_SIZE // PART_SIZE)
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # "<md5 of part md5s>-<part count>"


# -- S3 errors ---------------------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_wrong_secret_is_permission_denied(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(PermissionDenied, match="Access denied"):
        artifact_store_for(f"{s3_bucket}/x").put_bytes(b"x", "f.txt")


def test_s3_unreachable_endpoint_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(Unavailable) as err:
        artifact_store_for("s3://some-bucket/p").list()
    assert f"127.0.0.1:{port}" in err.value.message
    assert "some-bucket" in err.value.message


# -- GCS: settings, credentials, errors, what lands in the bucket ------------------------------------------


@pytest.mark.gcs
def test_gcs_objects_are_named_prefix_slash_path(gcs_server: GCSServer, gcs_bucket: str) -> None:
    """Checked through the emulator's own JSON API, not through the store under test."""
    store = artifact_store_for(f"{gcs_bucket}/team/runs/r1")
    store.put_bytes(b"w", "model/weights ü.bin")
    store.put_bytes(b"m", "MLmodel")
    bucket = gcs_bucket.removeprefix("gs://")
    assert gcs_server.object_names(bucket) == ["team/runs/r1/MLmodel", "team/runs/r1/model/weights ü.bin"]


@pytest.mark.gcs
def test_gcs_delete_removes_folder_markers(gcs_server: GCSServer, gcs_bucket: str) -> None:
    """A console-made "folder/" object is no file in listings, and deleting the folder removes it too."""
    bucket = gcs_bucket.removeprefix("gs://")
    store = artifact_store_for(f"{gcs_bucket}/p")
    store.put_bytes(b"x", "a/b/x.txt")
    for marker in ("p/a/", "p/a/b/", "p/keep/"):
        httpx.post(
            f"{gcs_server.endpoint_url}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": marker},
            content=b"",
        ).raise_for_status()
    assert store.list_recursive() == [_file("a/b/x.txt", 1)]
    store.delete("a")
    assert gcs_server.object_names(bucket) == ["p/keep/"]
    assert store.list() == [_dir("keep")]


def test_gcs_settings_endpoint_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcsfs.core

    from modelyard.artifacts.gcs import GCSArtifactStore

    clear_gcs_env(monkeypatch)
    store = artifact_store_for("gs://bucket/some/prefix")
    assert isinstance(store, GCSArtifactStore)
    assert (store.bucket, store.prefix, store.endpoint_url, store.token) == (
        "bucket",
        "some/prefix",
        None,
        "google_default",  # Application Default Credentials on real GCS
    )
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")  # the emulators' convention: no scheme
    store = artifact_store_for("gs://bucket")
    assert (store.endpoint_url, store.token) == ("http://localhost:4443", "anon")
    monkeypatch.setenv("MODELYARD_GCS_ENDPOINT_URL", "https://gcs.internal:8443/")
    monkeypatch.setenv("MODELYARD_GCS_TOKEN", "/secrets/sa.json")
    store = artifact_store_for("gs://bucket")
    assert (store.endpoint_url, store.token) == ("https://gcs.internal:8443", "/secrets/sa.json")
    monkeypatch.setenv("MODELYARD_GCS_TOKEN", "anon")
    fs = artifact_store_for("gs://bucket")._fs  # type: ignore[attr-defined]
    assert type(fs) is gcsfs.core.GCSFileSystem  # not the gRPC-probing ExtendedGcsFileSystem
    assert fs._location == "https://gcs.internal:8443"


def test_gcs_without_credentials_is_unauthenticated(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_gcs_env(monkeypatch)
    store = artifact_store_for("gs://some-bucket/p")  # no error yet: credentials are looked up on first use
    with pytest.raises(Unauthenticated, match="GOOGLE_APPLICATION_CREDENTIALS") as err:
        store.list()
    assert "gs://some-bucket/p" in err.value.message


def test_gcs_unreachable_endpoint_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcsfs.retry

    async def no_wait(seconds: float) -> None:  # gcsfs retries 6 times over ~30 s: skip the waiting
        pass

    monkeypatch.setattr(gcsfs.retry, "asyncio", SimpleNamespace(sleep=no_wait))
    clear_gcs_env(monkeypatch)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MODELYARD_GCS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(Unavailable) as err:
        artifact_store_for("gs://some-bucket/p").list()
    assert f"127.0.0.1:{port}" in err.value.message
    assert "some-bucket" in err.value.message


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError("Forbidden: b/bucket/o/x\nno storage.objects.create"), PermissionDenied),
        (HttpError({"code": 401, "message": "Invalid Credentials"}), Unauthenticated),
        (HttpError({"code": 503, "message": "Backend Error"}), Unavailable),
        (FileNotFoundError("b/bucket/o/x"), NotFound),
    ],
)
def test_gcs_errors_from_gcsfs_become_modelyard_errors(error: Exception, expected: type[Exception]) -> None:
    """What gcsfs raises for answers the emulator never gives (it checks no credentials)."""
    store = artifact_store_for("gs://bucket/p")
    with pytest.raises(expected, match="gs://bucket/p/x"), store._errors("x"):  # type: ignore[attr-defined]
        raise error
    with pytest.raises(KeyError), store._errors("x"):  # type: ignore[attr-defined]
        raise KeyError("not a storage error: passed on as it is")


# -- choosing a backend, URIs, paths ------------------------------------------------------------------------


def test_scheme_dispatch(tmp_path: Path) -> None:
    plain = artifact_store_for(str(tmp_path / "plain"))
    assert isinstance(plain, LocalArtifactStore)
    assert plain.root == tmp_path / "plain"
    encoded = artifact_store_for((tmp_path / "with space").as_uri())
    assert isinstance(encoded, LocalArtifactStore)
    assert encoded.root == tmp_path / "with space"
    assert isinstance(artifact_store_for("C:\\Users\\me\\artifacts"), LocalArtifactStore)
    from modelyard.artifacts.s3 import S3ArtifactStore

    s3 = artifact_store_for("s3://bucket/some/prefix")
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    from modelyard.artifacts.gcs import GCSArtifactStore

    assert isinstance(artifact_store_for("gs://bucket/p"), GCSArtifactStore)
    assert isinstance(artifact_store_for("GS://bucket/p"), GCSArtifactStore)
    with pytest.raises(InvalidArgument, match="gs://bucket/prefix"):
        artifact_store_for("gs:///no-bucket")


def test_unknown_scheme_lists_supported_ones() -> None:
    with pytest.raises(InvalidArgument) as err:
        artifact_store_for("ftp://host/path")
    assert "'ftp'" in err.value.message
    assert "file://" in err.value.message
    assert "s3://" in err.value.message
    assert "gs://" in err.value.message


def test_entry_point_adds_a_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.artifacts import base

    ep = EntryPoint(
        name="mem", value=f"{LocalArtifactStore.__module__}:LocalArtifactStore", group=base._GROUP
    )
    monkeypatch.setattr(base, "entry_points", lambda group: [ep] if group == base._GROUP else [])
    assert isinstance(artifact_store_for("mem:///tmp/x"), LocalArtifactStore)
    with pytest.raises(InvalidArgument, match="mem://"):
        artifact_store_for("gopher://x")


def test_file_uri_from_other_host_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="host"):
        artifact_store_for("file://otherhost/share")


def test_join_uri() -> None:
    assert join_uri("file:///home/u/art", "0", "abc/artifacts") == "file:///home/u/art/0/abc/artifacts"
    assert join_uri("file:///home/u/art/", "my run") == "file:///home/u/art/my%20run"
    assert join_uri("file:///", "x") == "file:///x"
    assert join_uri("s3://bucket", "0", "run") == "s3://bucket/0/run"
    assert join_uri("s3://bucket/prefix/", "a b") == "s3://bucket/prefix/a b"
    assert join_uri("gs://bucket/prefix/", "0", "a b") == "gs://bucket/prefix/0/a b"
    assert join_uri("/srv/art", "0", "run") == str(Path("/srv/art", "0", "run"))
    assert join_uri("s3://bucket/p") == "s3://bucket/p"
    with pytest.raises(InvalidArgument):
        join_uri("s3://bucket/p", "../other")


def test_join_uri_round_trips_through_local_store(tmp_path: Path) -> None:
    uri = join_uri((tmp_path / "root dir").as_uri(), "ünïcode run", "artifacts")
    store = artifact_store_for(uri)
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "root dir" / "ünïcode run" / "artifacts"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [(None, ""), ("", ""), (".", ""), ("a/b", "a/b"), ("./a//b/", "a/b"), ("a\\b", "a/b"), ("...", "...")],
)
def test_normalize_artifact_path(raw: str | None, clean: str) -> None:
    assert normalize_artifact_path(raw) == clean


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_normalize_refuses_escapes_and_says_why(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        normalize_artifact_path(bad)
    message = err.value.message
    assert repr(bad) in message
    assert any(word in message for word in ("absolute", "'..'", "drive letter", "NUL"))
    assert "relative path" in message


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("a" * 256, "256 bytes long (UTF-8); file systems allow 255"),
        ("dir/" + "é" * 128 + ".txt", "260 bytes long"),  # 132 characters, 260 bytes
        ("/".join(["d" * 250] * 5), "1254 bytes long (UTF-8); the limit is 1024"),
    ],
)
def test_names_and_paths_too_long_for_a_file_system_or_s3_are_refused(
    store: ArtifactStore, tmp_path: Path, path: str, fragment: str
) -> None:
    src = tmp_path / "local.txt"
    src.write_bytes(b"x")
    for call in (
        lambda: store.put_file(src, path),
        lambda: store.put_bytes(b"x", path),
        lambda: store.get_file(path, tmp_path / "got"),
        lambda: store.list(path),
        lambda: store.exists(path),
    ):
        with pytest.raises(InvalidArgument, match=re.escape(fragment)):
            call()
    assert store.list_recursive() == []
    store.put_bytes(b"x", "a" * 255 + "/" + "é" * 127)  # at the limits: stored
    assert [f.path for f in store.list_recursive()] == ["a" * 255 + "/" + "é" * 127]


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_object_key_is_checked_with_its_prefix(scheme: str) -> None:
    """A path within the limits can still make a key over 1,024 bytes (S3's and GCS's limit) under a long
    root prefix: refused before any request (no server needed)."""
    store = artifact_store_for(f"{scheme}://bucket/" + "p" * 100)
    path = "/".join(["d" * 200] * 5)  # 1,004 bytes: a valid artifact path
    assert normalize_artifact_path(path) == path
    with pytest.raises(InvalidArgument, match="1105 bytes long"):
        store.put_bytes(b"x", path)


def test_import_is_light() -> None:
    code = (
        "import sys, modelyard.artifacts; "
        "heavy = [m for m in ('s3fs', 'gcsfs', 'fsspec', 'rich', 'botocore') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
