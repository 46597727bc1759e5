"""What the REST clients of the server's other resources (accounts, registry, webhooks) share: the tracking
store's transport (pooled connections, the caller's token, retries, errors re-raised as the server raised them)."""

from __future__ import annotations

from typing import Any

import httpx

from modelyard.store.rest import RestStore, _seg


def segment(value: str) -> str:
    """One URL path segment, checked and escaped (a name with '/' stays one segment)."""
    return _seg(value)


class RestResource:
    def __init__(self, uri: str, client: httpx.Client | None = None) -> None:
        self._rest = RestStore(uri, client=client)

    def close(self) -> None:
        self._rest.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """`params` whose value is None are left out of the query."""
        return self._rest._call(
            method, path, body, {k: v for k, v in (params or {}).items() if v is not None}
        )
