"""`python -m modelyard ...` runs the command line, the same as the `modelyard` console script."""

from modelyard.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="modelyard")
