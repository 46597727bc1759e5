"""/api/v1/users, /tokens, /permissions and /audit: accounts and rights on a server started with --auth.

Admins manage users and read the audit log; anyone manages their own tokens; a resource's managers (and
admins) grant roles on it. With auth off there is no caller to check: every request may do everything,
which lets an operator prepare accounts before turning auth on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from modelyard.errors import InvalidArgument, PermissionDenied
from modelyard.schemas.accounts import (
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
from modelyard.server.authz import Principal
from modelyard.server.routes import ok, reply, store
from modelyard.store.sql.accounts import SqlAccountStore

router = APIRouter(tags=["accounts"])


def _accounts(request: Request) -> SqlAccountStore:
    accounts = request.app.state.accounts
    if accounts is None:
        raise InvalidArgument("This server's store keeps no accounts (auth needs a SQL backend store).")
    return accounts  # type: ignore[no-any-return]


def _caller(request: Request) -> Principal | None:
    return (request.scope.get("state") or {}).get("principal")


def _admin_only(request: Request, action: str) -> None:
    who = _caller(request)
    if who is not None and not who.is_admin:
        raise PermissionDenied(f"Only an admin may {action}; {who.username!r} is not one.")


def _self_or_admin(request: Request, username: str, action: str) -> None:
    who = _caller(request)
    if who is not None and not who.is_admin and who.username != username:
        raise PermissionDenied(f"Only {username!r} or an admin may {action}.")


def _changed(request: Request, target: str) -> None:
    """Note the target for the audit log and drop this worker's cached rights."""
    state = request.scope.get("state") or {}
    if "audit_targets" in state:
        state["audit_targets"].append(target)
    authorizer = getattr(request.app.state, "authorizer", None)
    if authorizer is not None:
        authorizer.forget()


# users -----------------------------------------------------------------------------------------------------
@router.get("/users/me", response_model=WhoAmI)
def whoami(request: Request) -> Response:
    who = _caller(request)
    if who is None:
        return reply(WhoAmI(is_admin=True, auth_enabled=False))
    return reply(WhoAmI(username=who.username, is_admin=who.is_admin, auth_enabled=True))


@router.post("/users", response_model=User, status_code=201)
def create_user(body: CreateUser, request: Request) -> Response:
    _admin_only(request, "create users")
    _changed(request, f"user:{body.username}")
    return reply(_accounts(request).create_user(body.username, body.is_admin), 201)


@router.get("/users", response_model=UserList)
def list_users(request: Request) -> Response:
    _admin_only(request, "list users")
    return reply(UserList(users=_accounts(request).list_users()))


@router.delete("/users/{username}")
def delete_user(username: str, request: Request) -> dict[str, Any]:
    _admin_only(request, "delete users")
    _changed(request, f"user:{username}")
    _accounts(request).delete_user(username)
    return ok()


# tokens ----------------------------------------------------------------------------------------------------
@router.post("/tokens", response_model=NewToken, status_code=201)
def create_token(body: CreateToken, request: Request) -> Response:
    """A new token, shown in this answer only. Without `username`, for the caller."""
    who = _caller(request)
    username = body.username or (who.username if who else None)
    if username is None:
        raise InvalidArgument("Say whose token this is: this server has auth off, so there is no caller.")
    _self_or_admin(request, username, f"create tokens for {username!r}")
    _changed(request, f"user:{username}")
    return reply(_accounts(request).create_token(username, body.name, body.expires_in_days), 201)


@router.get("/tokens", response_model=TokenList)
def list_tokens(request: Request, username: str | None = None) -> Response:
    """The caller's tokens; an admin may ask for anyone's, or (without `username`) everyone's."""
    who = _caller(request)
    if username is None and who is not None and not who.is_admin:
        username = who.username
    if username is not None:
        _self_or_admin(request, username, f"list the tokens of {username!r}")
    return reply(TokenList(tokens=_accounts(request).list_tokens(username)))


@router.post("/tokens/{token_id}/revoke", response_model=TokenInfo)
def revoke_token(token_id: str, request: Request) -> Response:
    accounts = _accounts(request)
    token = accounts.get_token(token_id)
    _self_or_admin(request, token.username, "revoke this token")
    _changed(request, f"token:{token_id}")
    return reply(accounts.revoke_token(token_id))


# roles -----------------------------------------------------------------------------------------------------
def _require_manager(request: Request, resource_type: ResourceType, resource_id: str) -> None:
    who = _caller(request)
    if who is None:
        return
    if resource_type is ResourceType.EXPERIMENT:
        store(request).get_experiment(resource_id)  # 404 for an unknown experiment, before any grant check
    request.app.state.authorizer.require(who, resource_type, resource_id, Role.MANAGE)


@router.put("/permissions/{resource_type}/{resource_id}/{username}", response_model=Permission)
def grant(
    resource_type: ResourceType, resource_id: str, username: str, body: GrantRole, request: Request
) -> Response:
    """Give `username` a role on one experiment or registered model (replacing the role they had)."""
    _require_manager(request, resource_type, resource_id)
    _changed(request, f"{resource_type.value}:{resource_id} user:{username}")
    return reply(_accounts(request).set_permission(username, resource_type, resource_id, body.role))


@router.delete("/permissions/{resource_type}/{resource_id}/{username}")
def revoke(resource_type: ResourceType, resource_id: str, username: str, request: Request) -> dict[str, Any]:
    _require_manager(request, resource_type, resource_id)
    _changed(request, f"{resource_type.value}:{resource_id} user:{username}")
    _accounts(request).delete_permission(username, resource_type, resource_id)
    return ok()


@router.get("/permissions", response_model=PermissionList)
def list_permissions(
    request: Request,
    username: str | None = None,
    resource_type: ResourceType | None = None,
    resource_id: str | None = None,
) -> Response:
    """Grants, filtered. Others than admins see their own, or all grants on a resource they manage."""
    who = _caller(request)
    if who is not None and not who.is_admin and username != who.username:
        if resource_type is None or resource_id is None:
            username = who.username
        else:
            _require_manager(request, resource_type, resource_id)
    found = _accounts(request).list_permissions(username, resource_type, resource_id)
    return reply(PermissionList(permissions=found))


# audit -----------------------------------------------------------------------------------------------------
@router.get("/audit", response_model=AuditList)
def audit(
    request: Request,
    username: str | None = None,
    since: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    """The newest write requests first: who, what, when, and how the server answered."""
    _admin_only(request, "read the audit log")
    return reply(AuditList(entries=_accounts(request).search_audit(username, since, limit)))
