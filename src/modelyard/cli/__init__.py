"""The `modelyard` command line: a click group whose commands call the SDK (`Client`), never a store.

`modelyard.cli.main:cli` is the console script. Each command module stays light at import time; pandas,
scikit-learn and matplotlib are imported inside the commands that need them, so `modelyard --help` is fast.
"""
