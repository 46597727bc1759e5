"""What a run records about where it came from: git state, entry point, Python, packages, host and user.
Computed once per process (and per repository), since none of it changes while training runs."""

from __future__ import annotations

import functools
import getpass
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path

TAG_PREFIX = "modelyard."
DIFF_ARTIFACT = "_modelyard/git.diff"
PACKAGES_ARTIFACT = "_modelyard/requirements.txt"


@dataclass(frozen=True)
class GitState:
    commit: str
    branch: str | None
    remote: str | None
    dirty: bool
    diff: str = field(repr=False, default="")


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip()


@functools.lru_cache(maxsize=8)
def git_state(path: str) -> GitState | None:
    """The git state of the repository containing `path`, or None outside a repository."""
    repo = Path(path)
    commit = _git(repo, "rev-parse", "HEAD")
    if not commit:
        return None
    branch = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    remote = _git(repo, "config", "--get", "remote.origin.url") or None
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    diff = (_git(repo, "diff", "HEAD") or "") if dirty else ""
    return GitState(
        commit=commit, branch=None if branch == "HEAD" else branch, remote=remote, dirty=dirty, diff=diff
    )


def entry_point() -> str:
    main = sys.modules.get("__main__")
    source = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    return str(Path(source).resolve()) if source and not source.startswith("-") else "<interactive>"


def command_line() -> str:
    """How this process was started, as a shell line (`python train.py --lr 0.1`), to reproduce the run."""
    import shlex

    head = sys.argv[0]
    launcher = ["python"] if head.endswith(".py") else []  # a console script runs as it is
    return shlex.join([*launcher, head, *sys.argv[1:]])[:5000]


def source_dir() -> str:
    ep = entry_point()
    return str(Path(ep).parent) if ep != "<interactive>" else os.getcwd()


@functools.lru_cache(maxsize=1)
def installed_packages() -> str:
    """requirements.txt-style list of the installed distributions (read from metadata, no resolver)."""
    seen = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(sorted(seen.values(), key=str.lower)) + "\n"


def run_tags() -> dict[str, str]:
    """Tags set on every run the fluent API starts."""
    tags = {
        TAG_PREFIX + "source.name": entry_point(),
        TAG_PREFIX + "python_version": platform.python_version(),
        TAG_PREFIX + "host": socket.gethostname(),
        TAG_PREFIX + "user": _user(),
    }
    if sys.argv and sys.argv[0] and not sys.argv[0].startswith("-"):
        tags[TAG_PREFIX + "source.command"] = command_line()
    git = git_state(source_dir())
    if git is not None:
        tags[TAG_PREFIX + "source.git.commit"] = git.commit
        tags[TAG_PREFIX + "source.git.dirty"] = str(git.dirty).lower()
        if git.branch:
            tags[TAG_PREFIX + "source.git.branch"] = git.branch
        if git.remote:
            tags[TAG_PREFIX + "source.git.repo_url"] = git.remote
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
