"""Example pipelines and scripts that ship with Modelyard (the quickstart runs one)."""
