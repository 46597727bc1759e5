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
