"""Wire models for the server's accounts: users, API tokens, roles on resources, and the audit log.
Times are milliseconds since the epoch."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Role(str, Enum):
    """What a user may do with one experiment or registered model; each role includes the ones before it."""

    READ = "READ"  # see it, its runs, metrics and artifacts
    EDIT = "EDIT"  # also log to it, create and update runs, upload artifacts
    MANAGE = "MANAGE"  # also delete it and its runs, and grant roles on it

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.READ: 1, Role.EDIT: 2, Role.MANAGE: 3}


class ResourceType(str, Enum):
    EXPERIMENT = "experiment"
    REGISTERED_MODEL = "registered_model"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class User(_Model):
    user_id: int
    username: str
    is_admin: bool = False
    created_time: int


class TokenInfo(_Model):
    """A token as listed: never the secret itself, which only its SHA-256 digest remembers."""

    token_id: str
    username: str
    name: str
    created_time: int
    expires_time: int | None = None
    revoked_time: int | None = None
    last_used_time: int | None = None


class NewToken(TokenInfo):
    """A token just created: `token` is shown this once and cannot be read back."""

    token: str


class Permission(_Model):
    username: str
    resource_type: ResourceType
    resource_id: str
    role: Role


class AuditEntry(_Model):
    entry_id: int
    time: int
    username: str | None = None
    method: str
    path: str
    targets: str = ""  # the resources the request touched, e.g. "experiment:3 run:9f0c..."
    status: int
    client: str | None = None


# request and response bodies of /api/v1/users, /tokens, /permissions and /audit ---------------------------
class CreateUser(_Model):
    username: str
    is_admin: bool = False


class UserList(_Model):
    users: list[User]


class CreateToken(_Model):
    username: str | None = None  # default: the caller; an admin may create tokens for anyone
    name: str = "default"
    expires_in_days: float | None = Field(default=90.0, gt=0, le=36_500)  # None: never expires


class TokenList(_Model):
    tokens: list[TokenInfo]


class GrantRole(_Model):
    role: Role


class PermissionList(_Model):
    permissions: list[Permission]


class AuditList(_Model):
    entries: list[AuditEntry]


class WhoAmI(_Model):
    """The caller as the server sees it; with auth off everyone is an anonymous admin."""

    username: str | None = None
    is_admin: bool
    auth_enabled: bool
