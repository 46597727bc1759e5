"""Metadata stores behind one small ABC, chosen by URI scheme (extensible through entry points)."""

from modelyard.store.base import TrackingStore
from modelyard.store.registry import tracking_store_for

__all__ = ["TrackingStore", "tracking_store_for"]
