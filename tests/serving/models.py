"""python_function models for the serving tests (importable, so cloudpickle saves them by reference)."""

from __future__ import annotations

import os
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


EXIT_VALUE = 13.0  # ExitOn's process exits on rows holding it, as a segfault or the OOM killer would end it


class ExitOn:
    """Sums each row, but ends its whole process (os._exit) on EXIT_VALUE: a crash no `except` can catch."""

    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        if (x == EXIT_VALUE).any():
            os._exit(3)
        return x.sum(axis=1)


class Stamp:
    """Sleeps `seconds` per batch and answers each row with (its first value, pid, start, end): which worker
    process predicted it, and when."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        start = time.time()
        time.sleep(self.seconds)
        stamp = [os.getpid(), start, time.time()]
        return np.column_stack([x[:, 0], np.tile(stamp, (len(x), 1))])


class Offset:
    """Sums each row and adds `offset`: another version of RowSum (offset 0 agrees with it, others do not)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def predict(self, inputs):
        return np.asarray(inputs, dtype=np.float64).sum(axis=1) + self.offset


class Flaky:
    """Sums each row, but crashes (500) on rows whose first value's last digit is 0, 1 or 2: on rows
    0, 1, 2, ... sent in turn, 30% of the requests fail."""

    def predict(self, inputs):
        x = np.asarray(inputs, dtype=np.float64)
        if (np.floor(x[:, 0]) % 10 < 3).any():
            raise RuntimeError("the flaky model crashed")
        return x.sum(axis=1)


class Broken:
    """Fails on every request (500)."""

    def predict(self, inputs):
        raise RuntimeError("the broken model always fails")
