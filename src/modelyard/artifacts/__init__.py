"""Artifact stores: the files of a run or experiment in a local folder, S3, GCS, or a plugin backend.

Backends are imported only when `artifact_store_for` needs them, so importing this package stays cheap.
"""

from __future__ import annotations

from modelyard.artifacts.base import ArtifactStore, artifact_store_for, join_uri, normalize_artifact_path

__all__ = ["ArtifactStore", "artifact_store_for", "join_uri", "normalize_artifact_path"]
