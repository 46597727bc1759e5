"""The metric journal: every point the buffered writer accepts is appended here before `log_metric` returns.

A journal is written through a shared memory map, so a record is in the kernel's page cache as soon as it is
copied: it survives a SIGKILL of the process, though not a crash of the machine (nothing is fsynced on the
hot path; that would cost milliseconds per point). One journal belongs to one writer, numbered per run
(1, 2, 3, ...), in a folder of its own tracking URI:

    <id>.lock       held with flock(2) while the owner lives; the kernel releases it however the process ends
    <id>.<n>.seg    segments of checksummed records, preallocated, zeros after the last record

A journal whose lock can be taken belongs to a process that is gone: `orphans` hands it to the caller, which
stores its points and `discard`s it, or `release`s it for a later try. Records are verified when read back:
a torn record (the process died inside the copy) ends its segment."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import mmap
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

Record = tuple[str, int, str, float, int, int]  # run_id, seq (numbered per run), key, value, step, timestamp
_PREFIX = struct.Struct("<II")  # record size, CRC-32 of the body
_BODY = struct.Struct("<QdqqBH")  # seq, value, step, timestamp, run id length, key length
FIRST_SEGMENT = 256 << 10  # segments grow from 256 KiB to 16 MiB: small for short scripts, few for long runs
LAST_SEGMENT = 16 << 20


class Journal:
    """The journal of one writer. Not thread-safe: the writer calls it under its own lock.

    Where the folder cannot be written (read-only, disk full), points are kept in memory instead, with one
    error logged: logging goes on, but those points would not survive the process."""

    def __init__(self, folder: Path) -> None:
        self.id = uuid.uuid4().hex
        self._folder = folder
        self._closed: list[tuple[Path, dict[str, int]]] = []  # full segments: path, last seq per run in it
        self._number, self._fd, self._pos, self._lock_fd = 0, -1, 0, -1
        self._map: mmap.mmap | None = None
        self._runs: dict[str, int] = {}  # last seq per run in the open segment
        self._noted: dict[str, int] = {}  # what the lock file says is stored
        self._in_memory: list[Record] | None = None  # set when the folder cannot be written
        try:
            self._lock_fd = _create_lock(folder, self.id)
            self._open_segment(FIRST_SEGMENT)
        except OSError as exc:
            self._fall_back(exc)

    def append(self, run_id: str, seq: int, key: str, value: float, step: int, timestamp: int) -> None:
        if self._in_memory is None:
            try:
                self._append(run_id, seq, key, value, step, timestamp)
                return
            except OSError as exc:  # a new segment could not be made
                self._fall_back(exc)
        assert self._in_memory is not None
        self._in_memory.append((run_id, seq, key, value, step, timestamp))

    def _append(self, run_id: str, seq: int, key: str, value: float, step: int, timestamp: int) -> None:
        run, name = run_id.encode(), key.encode()
        body = _BODY.pack(seq, value, step, timestamp, len(run), len(name)) + run + name
        size = _PREFIX.size + len(body)
        if self._map is None or self._pos + size > len(self._map):
            self._rotate()
        assert self._map is not None
        pos = self._pos
        # The body first, then its size and checksum: a record cut short by a kill reads as the end.
        self._map[pos + _PREFIX.size : pos + size] = body
        _PREFIX.pack_into(self._map, pos, size, zlib.crc32(body))
        self._pos = pos + size
        self._runs[run_id] = seq

    def _fall_back(self, exc: OSError) -> None:
        log.error(
            "Cannot write the metric journal in %s (%s): points are kept in memory only until stored, "
            "and a crash of this process would lose them.",
            self._folder,
            exc,
        )
        self._in_memory = []

    def records(self) -> Iterator[Record]:
        """Every record written so far, oldest first: a snapshot, read lazily, that later appends do not
        change (so the caller needs the writer's lock only for this call)."""
        closed = [path for path, _ in self._closed]
        current = self._map[: self._pos] if self._map is not None else b""
        return _records(closed, current, list(self._in_memory or ()))

    def release(self, stored: dict[str, int]) -> None:
        """Delete the full segments whose every point is stored (`stored`: last stored seq per run), and
        note `stored` in the lock file, so that whoever takes this journal over sends only the rest."""
        if self._lock_fd >= 0 and stored != self._noted:
            _note(self._lock_fd, stored)
            self._noted = dict(stored)
        keep = []
        for path, runs in self._closed:
            if all(stored.get(run, 0) >= seq for run, seq in runs.items()):
                path.unlink(missing_ok=True)
            else:
                keep.append((path, runs))
        self._closed = keep
        if self._in_memory:
            self._in_memory = [r for r in self._in_memory if r[1] > stored.get(r[0], 0)]

    def close(self, remove: bool) -> None:
        """Close; `remove` deletes the files (everything is stored), else they stay for the next process."""
        self._close_segment()
        if remove and self._lock_fd >= 0:
            for path, _ in self._closed:
                path.unlink(missing_ok=True)
            _segment_path(self._folder, self.id, self._number).unlink(missing_ok=True)
            (self._folder / f"{self.id}.lock").unlink(missing_ok=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock: an unstored journal becomes an orphan
            self._lock_fd = -1

    def abandon(self) -> None:
        """In a forked child: drop the parent's journal without touching its files or its lock."""
        self._close_segment()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _rotate(self) -> None:
        if self._map is not None:
            self._close_segment()
            self._closed.append((_segment_path(self._folder, self.id, self._number), self._runs))
            self._runs = {}
        self._open_segment(min(LAST_SEGMENT, FIRST_SEGMENT << self._number))

    def _open_segment(self, size: int) -> None:
        self._number += 1
        path = _segment_path(self._folder, self.id, self._number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:  # reserve the blocks now: a full disk is an error here, not a SIGBUS at some later append
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate
                    raise
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd, self._pos = fd, 0

    def _close_segment(self) -> None:
        if self._map is not None:
            self._map.close()
            os.close(self._fd)
            self._map, self._fd = None, -1


class Orphan:
    """The journal of a writer whose process is gone; its lock is held by this process until discarded."""

    def __init__(self, folder: Path, journal_id: str, lock_fd: int) -> None:
        self.id = journal_id
        self._folder, self._lock_fd = folder, lock_fd

    def records(self) -> Iterator[Record]:
        for path in self._segments():
            yield from _read_segment(path)

    def stored(self) -> dict[str, int]:
        """What the owner noted as stored (last seq per run); empty when the note is unreadable."""
        try:
            noted = json.loads(os.pread(self._lock_fd, 1 << 24, 0) or b"{}")
            return {str(k): int(v) for k, v in noted.items()}
        except (ValueError, TypeError, AttributeError):  # torn by the kill: resend, the store skips repeats
            return {}

    def discard(self) -> None:
        """Every point is stored: delete the journal (segments first, so a lock file never outlives them)."""
        for path in self._segments():
            path.unlink(missing_ok=True)
        (self._folder / f"{self.id}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)

    def release(self) -> None:
        """Keep the journal for a later try."""
        os.close(self._lock_fd)

    def _segments(self) -> list[Path]:
        found = self._folder.glob(f"{self.id}.*.seg")
        return sorted(found, key=lambda p: int(p.name.split(".")[1]))


def orphans(folder: Path, own: str | None = None) -> Iterator[Orphan]:
    """Journals in `folder` whose owner is gone, each locked for the caller as it is handed out."""
    if not folder.is_dir():
        return
    for lock in sorted(folder.glob("*.lock")):
        journal_id = lock.name[: -len(".lock")]
        if journal_id == own:
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # discarded meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its owner is alive, or another process is storing it
        yield Orphan(folder, journal_id, fd)


def _create_lock(folder: Path, journal_id: str) -> int:
    """The owner's lock, locked before it appears under its name, so no one takes a new journal for an orphan."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{journal_id}.lock.new"
    fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(temporary, folder / f"{journal_id}.lock")
    return fd


def _note(fd: int, stored: dict[str, int]) -> None:
    data = json.dumps(stored, separators=(",", ":")).encode()
    os.ftruncate(fd, 0)  # a kill between the two leaves an empty note, never a wrong one
    os.pwrite(fd, data, 0)


def _segment_path(folder: Path, journal_id: str, number: int) -> Path:
    return folder / f"{journal_id}.{number}.seg"


def _records(closed: list[Path], current: bytes, in_memory: list[Record]) -> Iterator[Record]:
    for path in closed:
        yield from _read_segment(path)
    yield from _parse(current, len(current))
    yield from in_memory


def _read_segment(path: Path) -> Iterator[Record]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    yield from _parse(data, len(data))


def _parse(data: bytes | mmap.mmap, end: int) -> Iterator[Record]:
    pos, prefix, body = 0, _PREFIX.size, _BODY.size
    while pos + prefix + body <= end:
        size, crc = _PREFIX.unpack_from(data, pos)
        if size == 0:
            return  # the zeros after the last record
        record = bytes(data[pos + prefix : pos + size]) if pos + size <= end else b""
        if size < prefix + body or zlib.crc32(record) != crc:
            log.warning("Metric journal: a damaged record at byte %d ends what is read of this segment", pos)
            return
        seq, value, step, timestamp, run_len, key_len = _BODY.unpack_from(record)
        run_id = record[body : body + run_len].decode()
        key = record[body + run_len : body + run_len + key_len].decode()
        yield run_id, seq, key, value, step, timestamp
        pos += size
