"""Pipeline files written into a test's folder and loaded the way the CLI loads them."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

from modelyard.pipelines.dsl import Pipeline
from modelyard.pipelines.loading import load_pipeline

_counter = itertools.count()


def pipeline_file(folder: Path, source: str, stem: str | None = None) -> Path:
    """Write `source` (dedented) to a new .py file under `folder`; returns its path."""
    path = folder / f"{stem or f'pipe{next(_counter)}'}.py"
    path.write_text(textwrap.dedent(source))
    return path


def load(path: Path, name: str) -> Pipeline:
    return load_pipeline(f"{path}:{name}")


HEADER = """
import os
import time
from typing import NamedTuple

import numpy as np

import modelyard as my
from modelyard.pipelines import Dataset, Metrics, Model
"""


# A pipeline whose step overwrites the stored .npy outputs with other bytes of the same size, then reads one
# back (needs a `vector(n)` step and `Path` in the file it is added to): the damage the SHA-256 checks catch.
TAMPERED = """

@my.step
def tamper(home: str) -> int:
    # other bytes of the same size over every stored .npy output, as a stray write or a disk fault would do
    damaged = 0
    for path in Path(home).rglob("output.npy"):
        if path.parent.name == "outputs":
            np.save(path, np.arange(100, dtype=float) + 7)
            damaged += 1
    return damaged


@my.step(retries=2, retry_delay=0.1)
def total_after(v: np.ndarray) -> float:
    return float(v.sum())


@my.pipeline
def tampered(n: int = 100, home: str = ""):
    v = vector(n)
    total_after(v).after(tamper(home).after(v))
"""
