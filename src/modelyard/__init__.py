"""Modelyard: the pragmatic MLOps stack in one package."""

__version__ = "0.1.0"
