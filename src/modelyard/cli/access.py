"""`modelyard users|tokens|permissions|audit`: accounts and rights for a server started with --auth.

Pointed at the database (--tracking-uri sqlite:///... or postgresql://...) these commands have full rights:
that is how the first admin is created. Pointed at a server (http://...), they act as MODELYARD_TOKEN's user.
"""

from __future__ import annotations

import time

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_time,
    json_option,
    new_table,
    out,
    pass_state,
    print_json,
    resolve_experiment,
    tracking_uri_option,
)
from modelyard.errors import InvalidArgument
from modelyard.schemas.accounts import NewToken, ResourceType, Role

_EXPIRES = click.option(
    "--expires-in",
    "expires_in",
    default="90d",
    show_default=True,
    metavar="DURATION",
    help="Lifetime of the token: e.g. 12h, 30d, 1y, or 'never'.",
)
_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0, "y": 365.0}


def parse_days(text: str) -> float | None:
    """'12h', '30d', '2w', '1y' or 'never' as days (None: never)."""
    value = text.strip().lower()
    if value == "never":
        return None
    try:
        days = float(value[:-1]) * _UNITS[value[-1]] if value[-1:] in _UNITS else float(value)
    except (ValueError, IndexError):
        days = -1.0
    if not 0 < days <= 36_500:
        raise click.BadParameter(
            f"{text!r} is not a duration: use a number with h, d, w or y (e.g. 30d), or 'never'.",
            param_hint="--expires-in",
        )
    return days


def _show_new_token(token: NewToken) -> None:
    expires = fmt_time(token.expires_time) if token.expires_time else "never"
    err().print(
        f"API token [{ID_STYLE}]{token.token_id}[/] ({esc(token.name)}) for [bold]{esc(token.username)}[/], "
        f"expires {expires}. It is shown [bold]only now[/]; store it like a password:"
    )
    out().print(token.token, soft_wrap=True)
    err().print(
        f"[{DIM}]Use it with: export MODELYARD_TOKEN=<token>   (MLflow clients: MLFLOW_TRACKING_TOKEN)[/]"
    )


# users -----------------------------------------------------------------------------------------------------
@click.group("users")
def users() -> None:
    """Create, list and delete the users of a server started with --auth.

    The first admin is made on the server's database; later users by an admin, through the server.

    \b
    Example:
      modelyard users create admin --admin --tracking-uri postgresql+psycopg://postgres@127.0.0.1/modelyard
      MODELYARD_TOKEN=myd_... modelyard users create alice --tracking-uri http://mlhost:5000
    """


@users.command("create")
@tracking_uri_option
@click.argument("username")
@click.option("--admin", is_flag=True, help="May do everything, on every experiment and model.")
@click.option("--no-token", is_flag=True, help="Do not create a first API token.")
@_EXPIRES
@pass_state
def create_user(state: State, username: str, admin: bool, no_token: bool, expires_in: str) -> None:
    """Create a user, and a first API token for them (shown once).

    \b
    Example:
      modelyard users create alice
      modelyard users create ops --admin --expires-in never
    """
    days = parse_days(expires_in)
    user = state.accounts.create_user(username, is_admin=admin)
    err().print(f"Created user [bold]{esc(user.username)}[/]{' (admin)' if user.is_admin else ''}.")
    if not no_token:
        _show_new_token(state.accounts.create_token(username, "default", days))


@users.command("list")
@tracking_uri_option
@json_option
@pass_state
def list_users(state: State, as_json: bool) -> None:
    """List users (admins only, through a server).

    \b
    Example:
      modelyard users list
    """
    found = state.accounts.list_users()
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No users yet. Create the first admin with: modelyard users create NAME --admin")
        return
    table = new_table("User", "Admin", "Created")
    for user in found:
        table.add_row(
            esc(user.username), "yes" if user.is_admin else "", fmt_time(user.created_time, short=True)
        )
    out().print(table)


@users.command("delete")
@tracking_uri_option
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete_user(state: State, username: str, yes: bool) -> None:
    """Delete a user with their tokens and roles (the audit log keeps their name).

    \b
    Example:
      modelyard users delete bob --yes
    """
    if not yes:
        click.confirm(f"Delete user {username!r}, their tokens and roles?", abort=True, err=True)
    state.accounts.delete_user(username)
    err().print(f"Deleted user {esc(username)}.")


@users.command("me")
@tracking_uri_option
@pass_state
def whoami(state: State) -> None:
    """Who the server takes you for (MODELYARD_TOKEN's user).

    \b
    Example:
      MODELYARD_TOKEN=myd_... modelyard users me --tracking-uri http://mlhost:5000
    """
    from modelyard.store.rest_accounts import RestAccountStore

    accounts = state.accounts
    if not isinstance(accounts, RestAccountStore):
        raise InvalidArgument("`users me` asks a server: pass --tracking-uri http://HOST:PORT.")
    me = accounts.whoami()
    if not me.auth_enabled:
        out().print("This server has auth off: every caller may do everything.")
    else:
        out().print(f"{esc(me.username)}{' (admin)' if me.is_admin else ''}")


# tokens ----------------------------------------------------------------------------------------------------
@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke API tokens.

    A token is shown once, when created; the server keeps only its SHA-256 digest.

    \b
    Example:
      modelyard tokens create --name laptop --expires-in 30d
      modelyard tokens list
      modelyard tokens revoke 3f9a1c2b7d10
    """


@tokens.command("create")
@tracking_uri_option
@click.option("--user", "username", help="Whose token (default: yourself; others' need an admin).")
@click.option("--name", default="default", show_default=True, help="A label to tell tokens apart.")
@_EXPIRES
@pass_state
def create_token(state: State, username: str | None, name: str, expires_in: str) -> None:
    """Create an API token (printed once on stdout).

    \b
    Example:
      export MODELYARD_TOKEN=$(modelyard tokens create --name ci --expires-in 30d)
    """
    from modelyard.store.rest_accounts import RestAccountStore

    days = parse_days(expires_in)
    accounts = state.accounts
    if isinstance(accounts, RestAccountStore):
        token = accounts.create_token(username, name, days)
    elif username is None:
        raise click.BadParameter("say whose token it is (the database has no caller)", param_hint="--user")
    else:
        token = accounts.create_token(username, name, days)
    _show_new_token(token)


@tokens.command("list")
@tracking_uri_option
@click.option(
    "--user", "username", help="Whose tokens (default: yours through a server, everyone's on a database)."
)
@json_option
@pass_state
def list_tokens(state: State, username: str | None, as_json: bool) -> None:
    """List tokens: id, name, when they expire and were last used; never the secret.

    \b
    Example:
      modelyard tokens list --user alice
    """
    found = state.accounts.list_tokens(username)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No tokens. Create one with: modelyard tokens create")
        return
    now = int(time.time() * 1000)
    table = new_table("Token id", "User", "Name", "Created", "Expires", "Last used", "State")
    table.columns[0].style = ID_STYLE
    for t in found:
        if t.revoked_time:
            status = "[red]revoked[/]"
        elif t.expires_time and t.expires_time <= now:
            status = "[yellow]expired[/]"
        else:
            status = "[green]active[/]"
        table.add_row(
            t.token_id,
            esc(t.username),
            esc(t.name),
            fmt_time(t.created_time, short=True),
            fmt_time(t.expires_time, short=True) if t.expires_time else "never",
            fmt_time(t.last_used_time, short=True) if t.last_used_time else "",
            status,
        )
    out().print(table)


@tokens.command("revoke")
@tracking_uri_option
@click.argument("token_id")
@pass_state
def revoke_token(state: State, token_id: str) -> None:
    """Revoke a token by its id (see `tokens list`); servers refuse it within seconds.

    \b
    Example:
      modelyard tokens revoke 3f9a1c2b7d10
    """
    token = state.accounts.revoke_token(token_id)
    err().print(f"Revoked token {token.token_id} ({esc(token.name)}) of {esc(token.username)}.")


# permissions -----------------------------------------------------------------------------------------------
_TYPES = click.Choice([t.value for t in ResourceType])
_ROLES = click.Choice([r.value for r in Role], case_sensitive=False)


def _resource_id(state: State, resource_type: str, resource: str) -> str:
    if resource_type == ResourceType.EXPERIMENT.value:
        return resolve_experiment(state.client, resource).experiment_id  # an id or a name
    return resource


@click.group("permissions")
def permissions() -> None:
    """Grant users a role on an experiment or a registered model.

    Roles: READ (see it), EDIT (also log to it), MANAGE (also delete it and grant roles on it). Admins
    hold every role everywhere; others hold what is granted, or the server's --default-role.

    \b
    Example:
      modelyard permissions grant alice experiment churn EDIT
      modelyard permissions list --experiment churn
    """


@permissions.command("grant")
@tracking_uri_option
@click.argument("username")
@click.argument("resource_type", type=_TYPES, metavar="TYPE")
@click.argument("resource")
@click.argument("role", type=_ROLES, metavar="ROLE")
@pass_state
def grant(state: State, username: str, resource_type: str, resource: str, role: str) -> None:
    """Give USERNAME the ROLE (READ, EDIT or MANAGE) on one experiment or registered model.

    TYPE is `experiment` (RESOURCE: its id or name) or `registered_model` (RESOURCE: its name). The role
    replaces any role the user held there.

    \b
    Example:
      modelyard permissions grant alice experiment 3 MANAGE
    """
    resource_id = _resource_id(state, resource_type, resource)
    given = state.accounts.set_permission(
        username, ResourceType(resource_type), resource_id, Role(role.upper())
    )
    err().print(f"{esc(given.username)} now has {given.role.value} on {resource_type} {esc(resource_id)}.")


@permissions.command("revoke")
@tracking_uri_option
@click.argument("username")
@click.argument("resource_type", type=_TYPES, metavar="TYPE")
@click.argument("resource")
@pass_state
def revoke(state: State, username: str, resource_type: str, resource: str) -> None:
    """Take back USERNAME's role on a resource (they keep the server's default role).

    \b
    Example:
      modelyard permissions revoke alice experiment churn
    """
    resource_id = _resource_id(state, resource_type, resource)
    state.accounts.delete_permission(username, ResourceType(resource_type), resource_id)
    err().print(f"Removed {esc(username)}'s role on {resource_type} {esc(resource_id)}.")


@permissions.command("list")
@tracking_uri_option
@click.option("--user", "username", help="Only this user's roles.")
@click.option("--experiment", help="Only roles on this experiment (id or name).")
@click.option("--model", help="Only roles on this registered model.")
@json_option
@pass_state
def list_permissions(
    state: State, username: str | None, experiment: str | None, model: str | None, as_json: bool
) -> None:
    """List granted roles.

    \b
    Example:
      modelyard permissions list --user alice
    """
    if experiment and model:
        raise click.BadParameter("use either --experiment or --model", param_hint="--experiment/--model")
    kind, resource_id = None, None
    if experiment:
        kind, resource_id = ResourceType.EXPERIMENT, _resource_id(state, "experiment", experiment)
    elif model:
        kind, resource_id = ResourceType.REGISTERED_MODEL, model
    found = state.accounts.list_permissions(username, kind, resource_id)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No roles granted (users hold the server's default role).")
        return
    table = new_table("User", "Resource", "Id", "Role")
    for p in found:
        table.add_row(esc(p.username), p.resource_type.value, esc(p.resource_id), p.role.value)
    out().print(table)


# audit -----------------------------------------------------------------------------------------------------
@click.command("audit")
@tracking_uri_option
@click.option("--user", "username", help="Only this user's requests.")
@click.option("--since", metavar="DURATION", help="Only the last DURATION, e.g. 1h or 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Most entries.")
@json_option
@pass_state
def audit(state: State, username: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Show the audit log of a server with --auth: every write, who made it, when, and its answer.

    \b
    Example:
      modelyard audit --since 1d --user alice
    """
    since_ms = None
    if since is not None:
        try:
            since_ms = int(time.time() * 1000 - parse_days(since) * 86_400_000)  # type: ignore[operator]
        except (click.BadParameter, TypeError):
            raise click.BadParameter(
                f"{since!r} is not a duration such as 1h or 7d.", param_hint="--since"
            ) from None
    found = state.accounts.search_audit(username, since_ms, limit)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No audit entries (the log records writes to a server started with --auth).")
        return
    table = new_table("When", "User", "Request", "Resources", "Status")
    for e in found:
        style = "green" if e.status < 400 else "red"
        table.add_row(
            fmt_time(e.time),
            esc(e.username or "(not signed in)"),
            esc(f"{e.method} {e.path}"),
            esc(e.targets),
            f"[{style}]{e.status}[/]",
        )
    out().print(table)
