"""Stores that live in the tracking database beside the tracking store (accounts, registry, webhooks): they
share its engines, transactions and rules for a database that is down or locked."""

from __future__ import annotations

from typing import Any, TypeVar

from modelyard.store.sql.store import SqlTrackingStore

S = TypeVar("S", bound="AttachedStore")


class AttachedStore:
    _owns_tracking = False

    def __init__(self, tracking: SqlTrackingStore) -> None:
        self._tracking = tracking
        self._tx, self._ro, self._upsert = tracking._tx, tracking._ro, tracking._upsert

    @classmethod
    def open(cls: type[S], uri: str, **options: Any) -> S:
        """On a tracking store of its own (closed with this one), for the CLI."""
        store = cls(SqlTrackingStore(uri), **options)
        store._owns_tracking = True
        return store

    def close(self) -> None:
        if self._owns_tracking:
            self._tracking.close()
