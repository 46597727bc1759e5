"""Accounts in the tracking database: users, hashed API tokens, roles on resources, the audit log.

It shares the tracking store's engines and transactions (same database, same rules for a database that is
down or locked). Beyond `AccountStore`, the server uses `authenticate`, `role_of`, `granted_ids`,
`touch_token` and `record_audit`."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from modelyard.schemas.accounts import (
    AuditEntry,
    NewToken,
    Permission,
    ResourceType,
    Role,
    TokenInfo,
    User,
)
from modelyard.store.accounts import AccountStore, validate_username
from modelyard.store.sql.attached import AttachedStore
from modelyard.store.sql.store import now_ms
from modelyard.store.sql.tables import api_tokens, audit_log, permissions, users

TOKEN_PREFIX = "myd_"
DAY_MS = 86_400_000


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(
        user_id=row.user_id, username=row.username, is_admin=bool(row.is_admin), created_time=row.created_time
    )


def _token(row: Any) -> TokenInfo:
    return TokenInfo(
        token_id=row.token_id,
        username=row.username,
        name=row.name,
        created_time=row.created_time,
        expires_time=row.expires_time,
        revoked_time=row.revoked_time,
        last_used_time=row.last_used_time,
    )


_TOKEN_COLUMNS = (
    api_tokens.c.token_id,
    users.c.username,
    api_tokens.c.name,
    api_tokens.c.created_time,
    api_tokens.c.expires_time,
    api_tokens.c.revoked_time,
    api_tokens.c.last_used_time,
)


class SqlAccountStore(AttachedStore, AccountStore):
    # users -----------------------------------------------------------------------------------------------
    def create_user(self, username: str, is_admin: bool = False) -> User:
        validate_username(username)
        created = now_ms()
        try:
            with self._tx() as conn:
                user_id = conn.execute(
                    insert(users)
                    .values(username=username, is_admin=bool(is_admin), created_time=created)
                    .returning(users.c.user_id)
                ).scalar_one()
        except IntegrityError:
            raise AlreadyExists(f"A user named {username!r} exists already.") from None
        return User(user_id=user_id, username=username, is_admin=bool(is_admin), created_time=created)

    def _user_row(self, conn: Any, username: str) -> Any:
        row = conn.execute(select(users).where(users.c.username == username)).first()
        if row is None:
            raise NotFound(f"No user named {username!r}. See the users with: modelyard users list")
        return row

    def get_user(self, username: str) -> User:
        with self._ro() as conn:
            return _user(self._user_row(conn, username))

    def list_users(self) -> list[User]:
        with self._ro() as conn:
            return [_user(r) for r in conn.execute(select(users).order_by(users.c.username))]

    def delete_user(self, username: str) -> None:
        with self._tx() as conn:
            row = self._user_row(conn, username)
            # Explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only per connection pragma.
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == row.user_id))
            conn.execute(delete(permissions).where(permissions.c.user_id == row.user_id))
            conn.execute(delete(users).where(users.c.user_id == row.user_id))

    # tokens ----------------------------------------------------------------------------------------------
    def create_token(
        self, username: str, name: str = "default", expires_in_days: float | None = 90.0
    ) -> NewToken:
        if not name or len(name) > 256 or not name.isprintable():
            raise InvalidArgument("A token name must be 1-256 printable characters, e.g. 'laptop' or 'ci'.")
        if expires_in_days is not None and not 0 < expires_in_days <= 36_500:
            raise InvalidArgument(f"expires_in_days must be between 0 and 36500, got {expires_in_days}.")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = now_ms()
        expires = None if expires_in_days is None else created + int(expires_in_days * DAY_MS)
        token_id = secrets.token_hex(6)
        with self._tx() as conn:
            user = self._user_row(conn, username)
            conn.execute(
                insert(api_tokens).values(
                    token_id=token_id,
                    user_id=user.user_id,
                    name=name,
                    token_hash=token_digest(secret),
                    created_time=created,
                    expires_time=expires,
                )
            )
        return NewToken(
            token_id=token_id,
            username=username,
            name=name,
            created_time=created,
            expires_time=expires,
            token=secret,
        )

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        query = select(*_TOKEN_COLUMNS).join(users, users.c.user_id == api_tokens.c.user_id)
        if username is not None:
            query = query.where(users.c.username == username)
        with self._ro() as conn:
            return [_token(r) for r in conn.execute(query.order_by(api_tokens.c.created_time))]

    def get_token(self, token_id: str) -> TokenInfo:
        query = select(*_TOKEN_COLUMNS).join(users, users.c.user_id == api_tokens.c.user_id)
        with self._ro() as conn:
            row = conn.execute(query.where(api_tokens.c.token_id == token_id)).first()
        if row is None:
            raise NotFound(f"No token with id {token_id!r}. See your tokens with: modelyard tokens list")
        return _token(row)

    def revoke_token(self, token_id: str) -> TokenInfo:
        with self._tx() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_time.is_(None))
                .values(revoked_time=now_ms())
            )
        return self.get_token(token_id)

    def authenticate(self, token: str) -> tuple[User, str]:
        """(the token's user, the token's id); Unauthenticated, saying why, for any token that may not sign in."""
        query = (
            select(users, api_tokens.c.token_id, api_tokens.c.expires_time, api_tokens.c.revoked_time)
            .join(api_tokens, api_tokens.c.user_id == users.c.user_id)
            .where(api_tokens.c.token_hash == token_digest(token))
        )
        with self._ro() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise Unauthenticated("Unknown API token. Create one with: modelyard tokens create")
        if row.revoked_time is not None:
            raise Unauthenticated(
                f"API token {row.token_id} was revoked. Create a new one with: modelyard tokens create"
            )
        if row.expires_time is not None and row.expires_time <= now_ms():
            raise Unauthenticated(
                f"API token {row.token_id} has expired. Create a new one with: modelyard tokens create"
            )
        return _user(row), row.token_id

    def touch_token(self, token_id: str, when: int) -> None:
        with self._tx() as conn:
            conn.execute(
                update(api_tokens).where(api_tokens.c.token_id == token_id).values(last_used_time=when)
            )

    # roles -----------------------------------------------------------------------------------------------
    def set_permission(
        self, username: str, resource_type: ResourceType, resource_id: str, role: Role
    ) -> Permission:
        resource_type, role = ResourceType(resource_type), Role(role)
        if resource_type is ResourceType.EXPERIMENT:
            resource_id = self._tracking.get_experiment(resource_id).experiment_id  # exists, canonical id
        key = {"resource_type": resource_type.value, "resource_id": str(resource_id)}
        with self._tx() as conn:
            user = self._user_row(conn, username)
            where = and_(
                permissions.c.user_id == user.user_id,
                permissions.c.resource_type == key["resource_type"],
                permissions.c.resource_id == key["resource_id"],
            )
            changed = conn.execute(update(permissions).where(where).values(role=role.value)).rowcount
            if not changed:
                conn.execute(insert(permissions).values(user_id=user.user_id, role=role.value, **key))
        return Permission(username=username, role=role, **key)  # type: ignore[arg-type]

    def delete_permission(self, username: str, resource_type: ResourceType, resource_id: str) -> None:
        with self._tx() as conn:
            user = self._user_row(conn, username)
            gone = conn.execute(
                delete(permissions).where(
                    permissions.c.user_id == user.user_id,
                    permissions.c.resource_type == ResourceType(resource_type).value,
                    permissions.c.resource_id == str(resource_id),
                )
            ).rowcount
        if not gone:
            raise NotFound(f"{username} has no role on {ResourceType(resource_type).value} {resource_id}.")

    def list_permissions(
        self,
        username: str | None = None,
        resource_type: ResourceType | None = None,
        resource_id: str | None = None,
    ) -> list[Permission]:
        query = select(users.c.username, permissions).join(users, users.c.user_id == permissions.c.user_id)
        if username is not None:
            query = query.where(users.c.username == username)
        if resource_type is not None:
            query = query.where(permissions.c.resource_type == ResourceType(resource_type).value)
        if resource_id is not None:
            query = query.where(permissions.c.resource_id == str(resource_id))
        query = query.order_by(permissions.c.resource_type, permissions.c.resource_id, users.c.username)
        with self._ro() as conn:
            return [
                Permission(
                    username=r.username,
                    resource_type=ResourceType(r.resource_type),
                    resource_id=r.resource_id,
                    role=Role(r.role),
                )
                for r in conn.execute(query)
            ]

    def role_of(self, user_id: int, resource_type: ResourceType, resource_id: str) -> Role | None:
        """The role granted explicitly, if any (the server adds its default and admin rights)."""
        query = select(permissions.c.role).where(
            permissions.c.user_id == user_id,
            permissions.c.resource_type == resource_type.value,
            permissions.c.resource_id == str(resource_id),
        )
        with self._ro() as conn:
            role = conn.execute(query).scalar()
        return Role(role) if role else None

    def granted_ids(self, user_id: int, resource_type: ResourceType) -> set[str]:
        """Ids of the resources of this type the user holds any role on."""
        query = select(permissions.c.resource_id).where(
            permissions.c.user_id == user_id, permissions.c.resource_type == resource_type.value
        )
        with self._ro() as conn:
            return set(conn.execute(query).scalars())

    # audit -----------------------------------------------------------------------------------------------
    def record_audit(self, entries: Sequence[dict[str, Any]]) -> None:
        if entries:
            with self._tx() as conn:
                conn.execute(insert(audit_log), list(entries))

    def search_audit(
        self, username: str | None = None, since: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        if not 1 <= limit <= 10_000:
            raise InvalidArgument(f"limit must be between 1 and 10000, got {limit}.")
        query = select(audit_log)
        if username is not None:
            query = query.where(audit_log.c.username == username)
        if since is not None:
            query = query.where(audit_log.c.time >= since)
        query = query.order_by(audit_log.c.entry_id.desc()).limit(limit)
        with self._ro() as conn:
            return [AuditEntry.model_validate(r._asdict()) for r in conn.execute(query)]


__all__ = ["SqlAccountStore", "token_digest"]
