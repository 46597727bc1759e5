"""`modelyard users|tokens|permissions|audit` on the database itself (how the first admin is made)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelyard.cli.access import parse_days
from modelyard.cli.main import cli
from modelyard.store.sql.accounts import SqlAccountStore


def run(*args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("MODELYARD_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'team.db'}"


def test_first_admin_and_tokens_on_the_database(db: str) -> None:
    made = run("users", "create", "ann", "--admin", "--tracking-uri", db)
    token = made.stdout.strip()
    assert token.startswith("myd_") and "shown only now" in made.stderr.replace("\n", " ")
    user, _ = (accounts := SqlAccountStore.open(db)).authenticate(token)
    assert user.username == "ann" and user.is_admin
    accounts.close()
    assert run("users", "create", "bob", "--no-token", "--tracking-uri", db).stdout == ""
    assert "--user" in run("tokens", "create", "--tracking-uri", db, code=1).stderr
    ci = run(
        "tokens", "create", "--user", "bob", "--name", "ci", "--expires-in", "never", "--tracking-uri", db
    )
    listed = json.loads(run("tokens", "list", "--json", "--tracking-uri", db).stdout)
    assert [(t["username"], t["name"], t["expires_time"]) for t in listed][1] == ("bob", "ci", None)
    assert all(ci.stdout.strip() not in json.dumps(t) for t in listed)
    table = run("tokens", "list", "--user", "bob", "--tracking-uri", db).stdout
    assert "never" in table and "active" in table
    run("tokens", "revoke", listed[1]["token_id"], "--tracking-uri", db)
    assert "revoked" in run("tokens", "list", "--user", "bob", "--tracking-uri", db).stdout
    users = run("users", "list", "--tracking-uri", db).stdout
    assert "ann" in users and "yes" in users and "bob" in users
    run("users", "delete", "bob", "--tracking-uri", db, input="y\n")
    assert "bob" not in run("users", "list", "--tracking-uri", db).stdout


def test_permissions_by_experiment_name(db: str) -> None:
    run("--tracking-uri", db, "experiments", "create", "churn")
    run("users", "create", "bob", "--no-token", "--tracking-uri", db)
    granted = run("permissions", "grant", "bob", "experiment", "churn", "edit", "--tracking-uri", db)
    assert "bob now has EDIT on experiment 1" in granted.stderr
    listed = run("permissions", "list", "--experiment", "churn", "--tracking-uri", db).stdout
    assert "bob" in listed and "EDIT" in listed
    assert "No experiment" in run("permissions", "grant", "bob", "experiment", "nope", "READ",
                                  "--tracking-uri", db, code=1).stderr  # fmt: skip
    bad_role = run(
        "permissions", "grant", "bob", "experiment", "churn", "OWNER", "--tracking-uri", db, code=1
    )
    assert "ROLE" in bad_role.stderr and "manage" in bad_role.stderr.lower()
    run("permissions", "revoke", "bob", "experiment", "churn", "--tracking-uri", db)
    assert "No roles granted" in run("permissions", "list", "--tracking-uri", db).stderr
    assert "No audit entries" in run("audit", "--since", "7d", "--tracking-uri", db).stderr


def test_durations() -> None:
    assert parse_days("12h") == 0.5 and parse_days("2w") == 14 and parse_days("never") is None
    assert parse_days("30") == 30
    for bad in ("", "soon", "0d", "-1d", "500y"):
        with pytest.raises(Exception, match="not a duration"):
            parse_days(bad)
    assert "not a duration" in run("users", "create", "x", "--expires-in", "soon", code=1).stderr


def test_every_access_command_has_help() -> None:
    for args in (["users"], ["users", "create"], ["users", "list"], ["users", "delete"], ["users", "me"],
                 ["tokens"], ["tokens", "create"], ["tokens", "list"], ["tokens", "revoke"], ["permissions"],
                 ["permissions", "grant"], ["permissions", "revoke"], ["permissions", "list"], ["audit"]):  # fmt: skip
        assert "Example" in run(*args, "--help").stdout
