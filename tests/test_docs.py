"""Every code block in README.md and docs/*.md that is marked runnable runs, so the docs cannot drift.

Marking (invisible on GitHub, which does not render HTML comments):

    <!-- run -->                      on the line right before a ```python or ```bash fence: run the block
    <!-- run: file=train.py -->       ... and write it to that file first (other blocks import or run it)
    <!-- run: prelude -->            a python block that is also put in front of every later python block
                                      of the same file (imports, toy data the visible examples assume)
    <!-- run: hidden [options]        a block the reader does not see (setup: data, a registered model),
    ```python                         written inside the comment; it runs like a visible one
    ...
    ```
    -->
    <!-- run: timeout=120 -->         seconds (default 60)

Each marked block is one test, named `file:line`. The blocks of one file run in order, in one temporary folder
of their own with its own MODELYARD_HOME, so a block sees the files and the runs, models and experiments of the
blocks before it (a failed block skips the rest of its file): that is how the docs read, one step after another.
Python state does not carry over (each block runs in a fresh interpreter, as a user's script would), except
through `prelude` blocks. Python blocks run with this interpreter; shell blocks with `bash -e -o pipefail`;
the venv's bin comes first on PATH, so `modelyard` is this checkout's.

Blocks left unmarked need what this machine lacks (Kubernetes, a KFP server, a Ray cluster, S3, GPUs), a
long-running server in the foreground, or stand for values the reader fills in (ids like `9f0c2d...`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}

MARK = re.compile(r"^<!--\s*run(?::\s*(?P<options>.*?))?\s*(?P<close>-->)?\s*$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")


@dataclass
class Block:
    doc: Path
    line: int  # the fence's line, 1-based
    language: str
    code: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _options(text: str | None) -> dict[str, str]:
    options = {}
    for word in (text or "").split():
        key, _, value = word.partition("=")
        options[key] = value or "yes"
    unknown = set(options) - {"file", "prelude", "hidden", "timeout"}
    if unknown:
        raise ValueError(f"unknown run option(s) {sorted(unknown)}")
    return options


def parse(doc: Path) -> list[Block]:
    """The marked blocks of `doc`, in order."""
    lines = doc.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if not mark:
            continue
        options = _options(mark["options"])
        hidden = "hidden" in options
        where = f"{doc.relative_to(ROOT)}:{i + 1}"
        if hidden == bool(mark["close"]):
            raise ValueError(
                f"{where}: a hidden block's comment ends after its fence, a visible one's mark ends on its line"
            )
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence or fence["lang"] not in LANGUAGES:
            raise ValueError(f"{where}: a run mark must come right before a ```python or ```bash fence")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        if hidden and lines[end + 1].strip() != "-->":
            raise ValueError(f"{where}: a hidden block's comment must end with --> right after its fence")
        code = "\n".join(lines[i + 2 : end]) + "\n"
        blocks.append(Block(doc, i + 2, LANGUAGES[fence["lang"]], code, options))
    return blocks


BLOCKS = [block for doc in DOCS for block in parse(doc)]


@dataclass
class Workspace:
    folder: Path
    env: dict[str, str]
    preludes: list[str] = field(default_factory=list)
    failed: str | None = None


_workspaces: dict[Path, Workspace] = {}


@pytest.fixture(scope="session")
def docs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


def _workspace(doc: Path, root: Path) -> Workspace:
    if doc not in _workspaces:
        folder = root / doc.stem
        folder.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "MLFLOW_"))}
        env.update(
            MODELYARD_HOME=str(folder / ".modelyard"),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            PYTHONDONTWRITEBYTECODE="1",
            COLUMNS="160",
        )
        _workspaces[doc] = Workspace(folder, env)
    return _workspaces[doc]


def test_marks_are_found() -> None:
    """The collection itself works (a typo in a mark fails `parse` at import) and finds the marked blocks."""
    assert len(BLOCKS) >= 10
    assert len({b.name for b in BLOCKS}) == len(BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_doc_block(block: Block, docs_root: Path) -> None:
    space = _workspace(block.doc, docs_root)
    if space.failed:
        pytest.skip(f"an earlier block of this file failed: {space.failed}")
    space.failed = block.name  # until it passes
    code = block.code
    if block.language == "python":
        if "prelude" in block.options:
            space.preludes.append(code)
        else:
            code = "".join(space.preludes) + code
    script = space.folder / (
        block.options.get("file") or f"_block_{block.line}.{'py' if block.language == 'python' else 'sh'}"
    )
    script.write_text(code)
    if block.language == "python":
        command = [sys.executable, script.name]
    else:
        command = [shutil.which("bash") or "/bin/bash", "-e", "-o", "pipefail", script.name]
    try:
        done = subprocess.run(
            command,
            cwd=space.folder,
            env=space.env,
            capture_output=True,
            text=True,
            timeout=float(block.options.get("timeout", 60)),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.name} ran past {exc.timeout} s:\n{exc.stdout or ''}{exc.stderr or ''}")
    assert done.returncode == 0, (
        f"{block.name} failed (exit status {done.returncode}):\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    space.failed = None
