"""Accounts over a running server's /api/v1 (users, tokens, permissions, audit), with the caller's token
(MODELYARD_TOKEN): the server decides what the caller may do."""

from __future__ import annotations

from modelyard.schemas.accounts import (
    AuditEntry,
    AuditList,
    CreateToken,
    CreateUser,
    GrantRole,
    NewToken,
    Permission,
    PermissionList,
    ResourceType,
    Role,
    TokenInfo,
    TokenList,
    User,
    UserList,
    WhoAmI,
)
from modelyard.store.accounts import AccountStore
from modelyard.store.rest_resource import RestResource, segment


class RestAccountStore(RestResource, AccountStore):
    def whoami(self) -> WhoAmI:
        return WhoAmI.model_validate(self._call("GET", "/users/me"))

    # users -----------------------------------------------------------------------------------------------
    def create_user(self, username: str, is_admin: bool = False) -> User:
        return User.model_validate(
            self._call("POST", "/users", CreateUser(username=username, is_admin=is_admin))
        )

    def get_user(self, username: str) -> User:
        for user in self.list_users():
            if user.username == username:
                return user
        from modelyard.errors import NotFound

        raise NotFound(f"No user named {username!r}. See the users with: modelyard users list")

    def list_users(self) -> list[User]:
        return UserList.model_validate(self._call("GET", "/users")).users

    def delete_user(self, username: str) -> None:
        self._call("DELETE", f"/users/{segment(username)}")

    # tokens ----------------------------------------------------------------------------------------------
    def create_token(
        self, username: str | None = None, name: str = "default", expires_in_days: float | None = 90.0
    ) -> NewToken:
        body = CreateToken(username=username, name=name, expires_in_days=expires_in_days)
        return NewToken.model_validate(self._call("POST", "/tokens", body))

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        return TokenList.model_validate(self._call("GET", "/tokens", params={"username": username})).tokens

    def revoke_token(self, token_id: str) -> TokenInfo:
        return TokenInfo.model_validate(self._call("POST", f"/tokens/{segment(token_id)}/revoke"))

    # roles -----------------------------------------------------------------------------------------------
    def set_permission(
        self, username: str, resource_type: ResourceType, resource_id: str, role: Role
    ) -> Permission:
        path = f"/permissions/{ResourceType(resource_type).value}/{segment(resource_id)}/{segment(username)}"
        return Permission.model_validate(self._call("PUT", path, GrantRole(role=role)))

    def delete_permission(self, username: str, resource_type: ResourceType, resource_id: str) -> None:
        self._call(
            "DELETE",
            f"/permissions/{ResourceType(resource_type).value}/{segment(resource_id)}/{segment(username)}",
        )

    def list_permissions(
        self,
        username: str | None = None,
        resource_type: ResourceType | None = None,
        resource_id: str | None = None,
    ) -> list[Permission]:
        params = {
            "username": username,
            "resource_type": ResourceType(resource_type).value if resource_type else None,
            "resource_id": resource_id,
        }
        return PermissionList.model_validate(self._call("GET", "/permissions", params=params)).permissions

    # audit -----------------------------------------------------------------------------------------------
    def search_audit(
        self, username: str | None = None, since: int | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        params = {"username": username, "since": since, "limit": limit}
        return AuditList.model_validate(self._call("GET", "/audit", params=params)).entries
