"""The account store interface: users, API tokens, roles on resources and the audit log of the server's auth.

Two implementations: `sql.accounts.SqlAccountStore` on the tracking database itself (what the server uses,
and what `modelyard users ...` uses when pointed at the database, to create the first admin) and
`rest_accounts.RestAccountStore` over a running server's /api/v1 (which checks the caller's rights)."""

from __future__ import annotations

import abc
import re

from modelyard.errors import InvalidArgument
from modelyard.schemas.accounts import (
    AuditEntry,
    NewToken,
    Permission,
    ResourceType,
    Role,
    TokenInfo,
    User,
)

_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,255}$")


def validate_username(username: object) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.match(username):
        raise InvalidArgument(
            f"Invalid username {username!r}: use 1-256 letters, digits, '_', '.', '@', '+' or '-', "
            "starting with a letter or digit."
        )
    return username


class AccountStore(abc.ABC):
    # users -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_user(self, username: str, is_admin: bool = False) -> User:
        """AlreadyExists if the name is taken."""

    @abc.abstractmethod
    def get_user(self, username: str) -> User: ...

    @abc.abstractmethod
    def list_users(self) -> list[User]: ...

    @abc.abstractmethod
    def delete_user(self, username: str) -> None:
        """Remove the user with their tokens and grants (the audit log keeps their name)."""

    # tokens ----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_token(
        self, username: str, name: str = "default", expires_in_days: float | None = 90.0
    ) -> NewToken:
        """A new random token for the user; its secret is in the result and nowhere else."""

    @abc.abstractmethod
    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Tokens of one user, or of everyone."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str) -> TokenInfo:
        """Refuse the token from now on; revoking twice is harmless."""

    # roles -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def set_permission(
        self, username: str, resource_type: ResourceType, resource_id: str, role: Role
    ) -> Permission:
        """Grant (or change) the user's role on one resource."""

    @abc.abstractmethod
    def delete_permission(self, username: str, resource_type: ResourceType, resource_id: str) -> None: ...

    @abc.abstractmethod
    def list_permissions(
        self,
        username: str | None = None,
        resource_type: ResourceType | None = None,
        resource_id: str | None = None,
    ) -> list[Permission]: ...

    # audit -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def search_audit(
        self, username: str | None = None, since: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest entries first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
