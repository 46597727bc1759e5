"""Pick a tracking store by URI scheme; other packages add schemes through the `modelyard.tracking_stores`
entry-point group."""

from __future__ import annotations

import threading
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from modelyard.errors import InvalidArgument

if TYPE_CHECKING:
    from modelyard.store.base import TrackingStore

_BUILTIN = {
    "sqlite": "modelyard.store.sql.store:SqlTrackingStore",
    "postgresql": "modelyard.store.sql.store:SqlTrackingStore",
    "postgresql+psycopg": "modelyard.store.sql.store:SqlTrackingStore",
    "postgres": "modelyard.store.sql.store:SqlTrackingStore",
    "http": "modelyard.store.rest:RestStore",
    "https": "modelyard.store.rest:RestStore",
}
_cache: dict[tuple[str, str | None], TrackingStore] = {}
_lock = threading.Lock()


def _load(target: str) -> type[TrackingStore]:
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)  # type: ignore[no-any-return]


def store_class_for(uri: str) -> type[TrackingStore]:
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in _BUILTIN:
        return _load(_BUILTIN[scheme])
    for ep in entry_points(group="modelyard.tracking_stores"):
        if ep.name == scheme:
            return ep.load()  # type: ignore[no-any-return]
    raise InvalidArgument(
        f"Unsupported tracking URI {uri!r}: use sqlite:///path/to/file.db, postgresql+psycopg://user@host/db "
        "or http(s)://host:port (a Modelyard server)."
    )


def tracking_store_for(uri: str) -> TrackingStore:
    """One shared store per URI (and API token) in this process (stores hold connection pools)."""
    from modelyard import config

    key = (uri, config.get("token"))  # a server store sends the token it was built with
    with _lock:
        store = _cache.get(key)
        if store is None:
            store = _cache[key] = store_class_for(uri)(uri)  # type: ignore[call-arg]
        return store


def clear_cache() -> None:
    with _lock:
        for store in _cache.values():
            store.close()
        _cache.clear()
