"""Where someone other than an admin may put an experiment's artifacts, with `--auth`.

An experiment's artifact location is where the server writes every upload to it and its runs, so whoever
chooses it chooses where the server writes, with the server's own file permissions and storage credentials.
Admins may choose any location. Anyone else gets the default (a folder of its own under the server's
artifact root), or names a location under one of the prefixes the operator allowed
(`modelyard server --artifact-location-prefix URI`, repeatable) that is a folder of its own: neither inside
nor around the artifact root or another experiment's location (whoever could write there could then
write into that experiment's files through the artifact proxies).

Locations are compared as canonical paths, never as strings: the scheme, the bucket (or host) and the path's
components, so `/data/art-other` is not under `/data/art`, nor `s3://bucket-2/x` under `s3://bucket`.
A location someone asks for must be absolute and free of `..`; a local one is compared with its symlinks
resolved. Relative and `~` paths are refused: they would name another folder once the server starts
elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from modelyard.errors import InvalidArgument, PermissionDenied

Location = tuple[str, ...]  # (scheme, bucket or host, *path components); local paths are ("file", "", ...)

_SHOWN = 300  # at most this many characters of a location a caller sent go into a message
_LIMIT_HELP = (
    "Leave artifact_location out: the server then keeps the experiment's artifacts in a folder of its own "
    "under its artifact root."
)


def canonical(uri: str, *, strict: bool = True) -> Location:
    """`uri` as comparable components. `strict` (a location someone asks for): InvalidArgument for a
    relative path, `..`, a query or fragment, or a URL without a bucket/host. Not strict (locations already
    stored, which admins may have written freely): never raises, `..` is resolved as the storage would."""
    if "\0" in uri:
        if strict:
            raise InvalidArgument(f"Artifact location {_show(uri)} contains a NUL byte.")
        uri = uri.replace("\0", "")
    scheme = urlsplit(uri).scheme.lower()
    if len(scheme) <= 1 or scheme == "file":  # a plain path (a one-letter "scheme" is a Windows drive)
        return _local(uri, scheme == "file", strict)
    parts = urlsplit(uri)
    if strict and (parts.query or parts.fragment or not parts.netloc):
        raise InvalidArgument(
            f"Artifact location {_show(uri)} is not a plain storage URL: write scheme://bucket/path, "
            "without '?' or '#'."
        )
    segments = parts.path.replace("\\", "/").split("/")
    return (scheme, parts.netloc.lower(), *_components(segments, uri, strict))


def _local(uri: str, is_file_uri: bool, strict: bool) -> Location:
    from modelyard.artifacts.local import local_path_from_uri

    try:
        path = str(local_path_from_uri(uri))  # as the local artifact store reads it (file:// percent-decoded)
    except InvalidArgument:  # file://otherhost/...: no local artifact store opens it either
        if strict:
            raise
        parts = urlsplit(uri)
        return ("file", parts.netloc.lower(), *_components(parts.path.split("/"), uri, False))
    if strict:
        if not os.path.isabs(urlsplit(uri).path if is_file_uri else uri):
            raise InvalidArgument(
                f"Artifact location {_show(uri)} is not an absolute path; write /absolute/path or "
                "file:///absolute/path (a relative or ~ path would name another folder once the server "
                "runs elsewhere)."
            )
        _components(path.split(os.sep), uri, strict=True)  # refuses '..' before anything resolves it
    resolved = os.path.realpath(path)  # symlinks resolved: a link inside a prefix may point anywhere
    return ("file", "", *_components(resolved.split(os.sep), uri, False))


def _components(segments: list[str], uri: str, strict: bool) -> list[str]:
    kept: list[str] = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if strict and (segment == ".." or unquote(segment) in ("..", ".")):
            raise InvalidArgument(f"Artifact location {_show(uri)} contains '..'; write it without '..'.")
        if segment == "..":
            kept = kept[:-1]
        else:
            kept.append(segment)
    return kept


def is_under(location: Location, prefix: Location) -> bool:
    """Whether `location` is `prefix` or inside it, comparing whole components."""
    return location[: len(prefix)] == prefix


def overlaps(a: Location, b: Location) -> bool:
    return is_under(a, b) or is_under(b, a)


def _show(uri: str) -> str:
    return repr(uri if len(uri) <= _SHOWN else uri[:_SHOWN] + "...")


@dataclass(frozen=True)
class LocationPolicy:
    """The artifact root (where default locations go) and the prefixes under which non-admins may name a
    location; the prefixes are checked when the server starts."""

    artifact_root: str
    prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for prefix in self.prefixes:
            try:
                canonical(prefix)
            except InvalidArgument as exc:
                raise InvalidArgument(f"--artifact-location-prefix {prefix!r}: {exc.message}") from None

    def check(self, username: str, location: str, taken: Callable[[], Iterable[str]]) -> None:
        """PermissionDenied, saying what is allowed, unless `username` (not an admin) may create an
        experiment at `location`; `taken()`: every existing experiment's artifact location."""
        if not self.prefixes:
            raise PermissionDenied(
                f"Only an admin may choose where an experiment's artifacts go; {username!r} asked for "
                f"{_show(location)}. {_LIMIT_HELP} (An admin can let users choose locations under given "
                "prefixes: modelyard server --auth --artifact-location-prefix URI.)"
            )
        asked = canonical(location)
        # Strictly inside a prefix: one experiment never takes a whole prefix, and with it everyone's place.
        inside = [p for p in self.prefixes if is_under(asked, prefix := canonical(p)) and asked != prefix]
        if not inside:
            raise PermissionDenied(
                f"{username!r} may choose an experiment's artifact location only in a folder under "
                f"{', '.join(self.prefixes)}; {_show(location)} is not. Pick a folder of the experiment's "
                f"own under one of those prefixes, or: {_LIMIT_HELP}"
            )
        clash = None
        if overlaps(asked, canonical(self.artifact_root, strict=False)):
            clash = "the server's artifact root, where experiments get their default locations"
        elif any(overlaps(asked, canonical(other, strict=False)) for other in taken()):
            clash = "another experiment's artifact location"
        if clash is not None:
            raise PermissionDenied(
                f"Artifact location {_show(location)} is inside, or contains, {clash}: each experiment needs "
                f"a folder of its own. Pick a folder under {inside[0]} that no experiment uses, or: "
                f"{_LIMIT_HELP}"
            )
