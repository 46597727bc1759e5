"""python_function models for the serving tests (importable, so cloudpickle saves them by reference)."""

from __future__ import annotations

import time

import numpy as np

POISON_VALUE = 666.0  # the model rejects rows holding it: ValueError -> 400
CRASH_VALUE = 999.0  # the model crashes on rows holding it: RuntimeError -> 500


class RowSum:
    """Sums each row; refuses POISON_VALUE and crashes on CRASH_VALUE anywhere in the batch."""

    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        if (x == POISON_VALUE).any():
            raise ValueError(f"{POISON_VALUE} is not a valid reading")
        if (x == CRASH_VALUE).any():
            raise RuntimeError("the model crashed")
        return x.sum(axis=1)


class Slow:
    """Sleeps `seconds` per batch, then returns the first column."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, inputs):
        time.sleep(self.seconds)
        return np.asarray(inputs)[:, 0]


class Identity:
    """Returns its input unchanged (saved without a signature: any tensor goes through)."""

    def predict(self, inputs):
        return inputs


class TextLength:
    """Length of each string of a 1-d BYTES tensor, and the text upper-cased."""

    def predict(self, inputs):
        texts = np.asarray(inputs, dtype=object)
        return {
            "length": np.array([len(t) for t in texts], dtype=np.int64),
            "upper": np.array([t.upper() for t in texts], dtype=object),
        }
