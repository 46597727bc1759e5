"""The account store for a tracking URI: the database itself (full rights: how the first admin is made)
or a server's REST API (rights of MODELYARD_TOKEN's user)."""

from __future__ import annotations

from modelyard import config
from modelyard.store.accounts import AccountStore


def account_store_for(tracking_uri: str | None = None) -> AccountStore:
    uri = tracking_uri or config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        from modelyard.store.rest_accounts import RestAccountStore

        return RestAccountStore(uri)
    from modelyard.store.sql.accounts import SqlAccountStore

    return SqlAccountStore.open(uri)


__all__ = ["account_store_for"]
