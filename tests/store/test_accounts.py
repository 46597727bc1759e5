"""The account store contract, on SQLite and PostgreSQL, directly and through the server's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from modelyard.schemas.accounts import ResourceType, Role
from modelyard.store.accounts import AccountStore
from modelyard.store.sql.accounts import SqlAccountStore
from modelyard.store.sql.store import SqlTrackingStore
from tests.store.conftest import served

EXPERIMENT = ResourceType.EXPERIMENT


@pytest.fixture
def sql(store_uri: str, tmp_path: Path) -> Iterator[SqlAccountStore]:
    tracking = SqlTrackingStore(store_uri, default_artifact_root=str(tmp_path))
    yield SqlAccountStore(tracking)
    tracking.close()


@pytest.fixture(params=["direct", "rest"])
def accounts(request: pytest.FixtureRequest, store_uri: str, tmp_path: Path) -> Iterator[AccountStore]:
    if request.param == "direct":
        direct = SqlAccountStore.open(store_uri)
        yield direct
        direct.close()
        return
    from modelyard.store.rest_accounts import RestAccountStore

    with served(store_uri, str(tmp_path)) as client:
        store = RestAccountStore("http://testserver", client=client)
        yield store
        store.close()


def test_users(accounts: AccountStore) -> None:
    accounts.create_user("bob")
    admin = accounts.create_user("ann@example.com", is_admin=True)
    assert admin.is_admin and admin.user_id > 0
    assert [(u.username, u.is_admin) for u in accounts.list_users()] == [
        ("ann@example.com", True),
        ("bob", False),
    ]
    with pytest.raises(AlreadyExists, match="bob"):
        accounts.create_user("bob")
    for bad in ("", "with space", "-dash-first", "x" * 300):
        with pytest.raises(InvalidArgument, match="Invalid username"):
            accounts.create_user(bad)
    accounts.delete_user("bob")
    assert [u.username for u in accounts.list_users()] == ["ann@example.com"]
    with pytest.raises(NotFound, match="bob"):
        accounts.delete_user("bob")


def test_tokens(accounts: AccountStore) -> None:
    accounts.create_user("bob")
    first = accounts.create_token("bob", "laptop", expires_in_days=30)
    forever = accounts.create_token("bob", "ci", expires_in_days=None)
    assert first.token.startswith("myd_") and len(first.token) > 40 and first.token != forever.token
    assert (
        first.expires_time is not None and abs(first.expires_time - first.created_time - 30 * 86_400_000) < 10
    )
    assert forever.expires_time is None
    listed = accounts.list_tokens("bob")
    assert [t.name for t in listed] == ["laptop", "ci"] and not hasattr(listed[0], "token")
    revoked = accounts.revoke_token(first.token_id)
    assert revoked.revoked_time is not None
    assert accounts.revoke_token(first.token_id).revoked_time == revoked.revoked_time  # twice: harmless
    with pytest.raises(NotFound):
        accounts.revoke_token("nope")
    with pytest.raises(NotFound, match="alice"):
        accounts.create_token("alice")
    with pytest.raises(InvalidArgument):
        accounts.create_token("bob", "")
    accounts.delete_user("bob")
    assert accounts.list_tokens() == []


def test_authenticate(sql: SqlAccountStore) -> None:
    sql.create_user("bob")
    token = sql.create_token("bob")
    user, token_id = sql.authenticate(token.token)
    assert user.username == "bob" and token_id == token.token_id
    with pytest.raises(Unauthenticated, match="Unknown"):
        sql.authenticate(token.token + "x")
    sql.revoke_token(token.token_id)
    with pytest.raises(Unauthenticated, match="revoked"):
        sql.authenticate(token.token)


def test_permissions(accounts: AccountStore, sql: SqlAccountStore) -> None:
    exp = sql._tracking.create_experiment("shared")
    accounts.create_user("bob")
    accounts.create_user("cy")
    accounts.set_permission("bob", EXPERIMENT, exp, Role.READ)
    accounts.set_permission("bob", EXPERIMENT, exp, Role.EDIT)  # replaces
    accounts.set_permission("cy", EXPERIMENT, exp, Role.MANAGE)
    accounts.set_permission("bob", ResourceType.REGISTERED_MODEL, "churn", Role.READ)
    everything = [
        (p.username, p.resource_type.value, p.resource_id, p.role.value) for p in accounts.list_permissions()
    ]
    assert everything == [
        ("bob", "experiment", exp, "EDIT"),
        ("cy", "experiment", exp, "MANAGE"),
        ("bob", "registered_model", "churn", "READ"),
    ]
    assert [p.username for p in accounts.list_permissions(resource_type=EXPERIMENT, resource_id=exp)] == [
        "bob",
        "cy",
    ]
    assert [p.resource_id for p in accounts.list_permissions("bob", ResourceType.REGISTERED_MODEL)] == [
        "churn"
    ]
    with pytest.raises(NotFound):
        accounts.set_permission("bob", EXPERIMENT, "999", Role.READ)
    with pytest.raises(NotFound, match="no role"):
        accounts.delete_permission("cy", ResourceType.REGISTERED_MODEL, "churn")
    accounts.delete_permission("bob", EXPERIMENT, exp)
    assert sql.role_of(sql.get_user("bob").user_id, EXPERIMENT, exp) is None
    assert sql.role_of(sql.get_user("cy").user_id, EXPERIMENT, exp) is Role.MANAGE
    assert sql.granted_ids(sql.get_user("cy").user_id, EXPERIMENT) == {exp}


def test_audit(accounts: AccountStore, sql: SqlAccountStore) -> None:
    entry = {
        "method": "POST",
        "path": "/api/v1/runs",
        "targets": "experiment:1",
        "status": 201,
        "client": "10.0.0.1",
    }
    sql.record_audit(
        [{**entry, "time": t, "username": user} for t, user in ((1, "bob"), (2, "cy"), (3, "bob"))]
    )
    assert [e.time for e in accounts.search_audit()] == [3, 2, 1]
    assert [e.time for e in accounts.search_audit(username="bob")] == [3, 1]
    assert [e.time for e in accounts.search_audit(since=2, limit=1)] == [3]
    assert accounts.search_audit()[0].targets == "experiment:1"
