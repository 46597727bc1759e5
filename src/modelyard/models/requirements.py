"""A model's pip requirements: the installed versions of the packages its flavor names, nothing resolved.

Resolving the whole environment (MLflow's default) costs seconds per `log_model`; a flavor already knows
what its models need, and `importlib.metadata.version` answers in well under a millisecond per package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from modelyard.errors import InvalidArgument

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise InvalidArgument(f"{requirement!r} is not a pip requirement (expected e.g. 'pandas>=2').")
    return canonical(match.group(1))


@lru_cache(maxsize=256)
def pinned(distribution: str) -> str | None:
    """`name==version` for an installed distribution (a local label like +cpu dropped), else None."""
    try:
        installed = version(distribution)
    except PackageNotFoundError:
        return None
    return f"{distribution}=={installed.split('+', 1)[0]}"


def infer(distributions: Iterable[str]) -> list[str]:
    """Pinned requirements for the installed ones among `distributions`, in order, without duplicates."""
    seen: set[str] = set()
    out = []
    for dist in distributions:
        key = canonical(dist)
        if key in seen:
            continue
        seen.add(key)
        pin = pinned(dist)
        if pin is not None:
            out.append(pin)
    return out


def merge(inferred: Sequence[str], given: Sequence[str] | str | Path | None) -> list[str]:
    """`inferred` with the user's requirements added; a user's entry replaces an inferred one of that name.

    `given` is a list of requirement strings or the path of a requirements file."""
    if given is None:
        return list(inferred)
    if isinstance(given, (str, Path)):
        path = Path(given)
        if not path.is_file():
            raise InvalidArgument(f"requirements={str(given)!r}: pass a list of requirements or a file path.")
        given = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    user = [r.strip() for r in given if r and r.strip()]
    names = {requirement_name(r) for r in user if not r.startswith("-")}
    return [r for r in inferred if requirement_name(r) not in names] + user
