"""Auth in-process: tokens (hashed, expiring, revocable), roles per experiment on every route (REST v1,
MLflow-compatible API, both artifact proxies), admin-only routes, and the audit log."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from modelyard.schemas.accounts import Role
from modelyard.server import ServerSettings, create_app
from modelyard.store.sql.accounts import SqlAccountStore


class Team:
    """A server with auth on and three users: an admin, alice and bob (neither admin)."""

    def __init__(self, tmp_path: Path, default_role: Role | None, prefixes: tuple[str, ...] = ()) -> None:
        self.db = tmp_path / "auth.db"
        self.artifacts = tmp_path / "artifacts"
        app = create_app(
            ServerSettings(
                backend_store_uri=f"sqlite:///{self.db}",
                artifacts_uri=str(self.artifacts),
                auth=True,
                default_role=default_role,
                artifact_location_prefixes=prefixes,
            )
        )
        self.app = app
        self.accounts: SqlAccountStore = app.state.accounts
        self.tokens = {}
        for name, admin in (("root", True), ("alice", False), ("bob", False)):
            self.accounts.create_user(name, is_admin=admin)
            self.tokens[name] = self.accounts.create_token(name, "test").token
        self.http = TestClient(app)

    def as_(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def experiment(self, owner: str, name: str = "secret") -> str:
        r = self.http.post("/api/v1/experiments", json={"name": name}, headers=self.as_(owner))
        assert r.status_code == 201, r.text
        return str(r.json()["experiment_id"])

    def run(self, owner: str, experiment_id: str) -> str:
        r = self.http.post("/api/v1/runs", json={"experiment_id": experiment_id}, headers=self.as_(owner))
        assert r.status_code == 201, r.text
        return str(r.json()["info"]["run_id"])


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, Role.READ)
    with t.http:
        yield t


@pytest.fixture
def private_team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, None)
    with t.http:
        yield t


def _error(response: object, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error_code"] == code
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


# -- authentication ----------------------------------------------------------------------------------------


def test_requests_without_a_valid_token_are_refused_with_what_to_do(team: Team) -> None:
    assert team.http.get("/health").status_code == 200
    assert team.http.get("/api/v1/openapi.json").status_code == 200
    missing = team.http.get("/api/v1/experiments")
    _error(missing, 401, "UNAUTHENTICATED", "Bearer", "MODELYARD_TOKEN", "modelyard tokens create")
    assert "Bearer" in missing.headers["www-authenticate"]
    _error(team.http.get("/api/v1/experiments", headers={"Authorization": "Bearer myd_nope"}), 401,
           "UNAUTHENTICATED", "Unknown API token")  # fmt: skip
    _error(team.http.get("/api/v1/experiments", headers={"Authorization": "Token abc"}), 401,
           "UNAUTHENTICATED", "Unsupported")  # fmt: skip
    _error(team.http.get("/api/v2.0/whatever"), 401, "UNAUTHENTICATED")  # unknown paths reveal nothing
    assert team.http.get("/api/v1/experiments", headers=team.as_("alice")).status_code == 200


def _every_route(app: object) -> list[tuple[str, str]]:
    """(method, path with sample ids) of every REST v1 route (from the spec) and every MLflow route."""
    from modelyard.server.mlflow_compat import artifacts, experiments, logged_models, run_data, runs

    found = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
    ]
    for prefix, module in (("/api/2.0/mlflow", m) for m in (experiments, runs, run_data, logged_models)):
        found += [(method, prefix + r.path) for r in module.router.routes for method in r.methods]
    found += [
        (method, "/api/2.0/mlflow-artifacts" + r.path)
        for r in artifacts.router.routes
        for method in r.methods
    ]
    return [(m, p.replace("{", "").replace("}", "").replace(":path", "")) for m, p in found if m != "HEAD"]


def test_every_route_but_health_and_docs_needs_a_token(team: Team) -> None:
    """Every route of the app (v1, MLflow, both artifact proxies, accounts) without a token: all say 401."""
    routes = [(m, p) for m, p in _every_route(team.app) if p not in ("/health", "/ready")]
    assert len(routes) > 60 and ("POST", "/api/2.0/mlflow/runs/log-batch") in routes
    for method, path in routes:
        response = team.http.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.status_code)


def test_a_refused_credential_is_never_echoed(team: Team) -> None:
    """No 401 quotes what the Authorization header held: without a scheme, its first word is the token."""
    alice = team.tokens["alice"]
    secret = "myd_" + "s3cr3t" * 8  # well-formed, unknown
    expired = team.accounts.create_token("alice", "short", expires_in_days=1e-8).token
    revoked = team.accounts.create_token("alice", "gone")
    team.accounts.revoke_token(revoked.token_id)
    time.sleep(0.01)

    def basic(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()

    cases = {
        alice: alice,  # a valid token, sent without a scheme
        secret: secret,
        f"Token {secret}": secret,
        f"Bearer:{secret}": secret,
        f"{secret} Bearer": secret,
        f"Bearer {secret}": secret,
        f"Bearer {expired}": expired,
        f"Bearer {revoked.token}": revoked.token,
        f"Basic {secret}": secret,
        basic(secret): secret,  # no 'username:' part
        basic(f"{secret}:"): secret,
        basic(f"{secret}:{alice}"): secret,  # a token as the username, with another user's token
        basic(f"bob:{alice}"): alice,
    }
    for path in ("/api/v1/experiments", "/api/2.0/mlflow/experiments/search"):
        for header, credential in cases.items():
            response = team.http.get(path, headers={"Authorization": header})
            assert response.status_code == 401, (header, response.text)
            assert response.json()["error_code"] == "UNAUTHENTICATED"
            shown = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
            assert credential not in shown, (header, shown)
            assert "s3cr3t" not in shown and alice[8:24] not in shown, (header, shown)


def test_basic_auth_with_the_token_as_password(team: Team) -> None:
    def basic(user: str, token: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}

    assert team.http.get("/api/v1/users/me", headers=basic("alice", team.tokens["alice"])).json() == {
        "username": "alice",
        "is_admin": False,
        "auth_enabled": True,
    }
    _error(team.http.get("/api/v1/users/me", headers=basic("bob", team.tokens["alice"])), 401,
           "UNAUTHENTICATED", "belongs to 'alice'")  # fmt: skip
    _error(team.http.get("/api/v1/users/me", headers={"Authorization": "Basic !!!"}), 401,
           "UNAUTHENTICATED", "Malformed")  # fmt: skip


def test_tokens_are_stored_hashed_and_can_expire_and_be_revoked(team: Team) -> None:
    engine = sa.create_engine(f"sqlite:///{team.db}")
    with engine.connect() as conn:
        hashes = set(conn.execute(sa.text("SELECT token_hash FROM api_tokens")).scalars())
    engine.dispose()
    assert len(hashes) == 3 and not hashes & set(team.tokens.values())
    assert not any(t.encode() in team.db.read_bytes() for t in team.tokens.values())

    short = team.accounts.create_token("alice", "short", expires_in_days=1e-8)  # ~1 ms
    time.sleep(0.01)
    _error(team.http.get("/api/v1/experiments", headers={"Authorization": f"Bearer {short.token}"}), 401,
           "UNAUTHENTICATED", "expired")  # fmt: skip

    created = team.http.post("/api/v1/tokens", json={"name": "laptop"}, headers=team.as_("alice"))
    assert created.status_code == 201 and created.json()["username"] == "alice"
    laptop = created.json()
    mine = {"Authorization": f"Bearer {laptop['token']}"}
    assert team.http.get("/api/v1/users/me", headers=mine).json()["username"] == "alice"
    listed = team.http.get("/api/v1/tokens", headers=team.as_("alice")).json()["tokens"]
    assert {t["name"] for t in listed} == {"test", "short", "laptop"} and all(
        "token" not in t for t in listed
    )
    _error(team.http.post(f"/api/v1/tokens/{laptop['token_id']}/revoke", headers=team.as_("bob")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    revoked = team.http.post(f"/api/v1/tokens/{laptop['token_id']}/revoke", headers=mine)
    assert revoked.status_code == 200 and revoked.json()["revoked_time"] is not None
    _error(team.http.get("/api/v1/users/me", headers=mine), 401, "UNAUTHENTICATED", "revoked")
    # Others cannot mint tokens for alice; an admin can.
    _error(team.http.post("/api/v1/tokens", json={"username": "alice"}, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    assert (
        team.http.post("/api/v1/tokens", json={"username": "alice"}, headers=team.as_("root")).status_code
        == 201
    )


# -- roles -------------------------------------------------------------------------------------------------


def test_roles_on_an_experiment_govern_the_v1_api(team: Team) -> None:
    exp = team.experiment("alice")  # its creator manages it
    run = team.run("alice", exp)
    batch = {"metrics": [{"key": "loss", "value": 1.0, "step": 0, "timestamp": 0}]}
    assert (
        team.http.post(f"/api/v1/runs/{run}/log-batch", json=batch, headers=team.as_("alice")).status_code
        == 200
    )

    # bob holds the default role, READ: he can look, not write.
    assert team.http.get(f"/api/v1/runs/{run}", headers=team.as_("bob")).status_code == 200
    search = {"experiment_ids": [exp]}
    assert (
        len(team.http.post("/api/v1/runs/search", json=search, headers=team.as_("bob")).json()["runs"]) == 1
    )
    denied = team.http.post(f"/api/v1/runs/{run}/log-batch", json=batch, headers=team.as_("bob"))
    _error(denied, 403, "PERMISSION_DENIED", "'bob' has the READ role on experiment", "needs EDIT",
           f"modelyard permissions grant bob experiment {exp} EDIT")  # fmt: skip
    _error(team.http.post("/api/v1/runs", json={"experiment_id": exp}, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    tag = f"/api/v1/experiments/{exp}/tags/owner"
    assert team.http.put(tag, json={"value": "alice"}, headers=team.as_("alice")).status_code == 200
    _error(team.http.delete(tag, headers=team.as_("bob")), 403, "PERMISSION_DENIED", "needs EDIT")

    # alice (MANAGE) grants bob EDIT: he can log but not delete; then she takes it back.
    grant = team.http.put(
        f"/api/v1/permissions/experiment/{exp}/bob", json={"role": "EDIT"}, headers=team.as_("alice")
    )
    assert grant.status_code == 200 and grant.json()["role"] == "EDIT"
    assert (
        team.http.post(f"/api/v1/runs/{run}/log-batch", json=batch, headers=team.as_("bob")).status_code
        == 200
    )
    _error(team.http.post(f"/api/v1/runs/{run}/delete", headers=team.as_("bob")), 403, "PERMISSION_DENIED",
           "needs MANAGE")  # fmt: skip
    _error(team.http.put(f"/api/v1/permissions/experiment/{exp}/bob", json={"role": "MANAGE"},
                         headers=team.as_("bob")), 403, "PERMISSION_DENIED")  # fmt: skip
    assert (
        team.http.delete(f"/api/v1/permissions/experiment/{exp}/bob", headers=team.as_("alice")).status_code
        == 200
    )
    _error(team.http.post(f"/api/v1/runs/{run}/log-batch", json=batch, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED")  # fmt: skip

    # Nobody but its managers and admins writes to the Default experiment either.
    _error(team.http.post("/api/v1/runs", json={"experiment_id": "0"}, headers=team.as_("alice")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    assert (
        team.http.post("/api/v1/runs", json={"experiment_id": "0"}, headers=team.as_("root")).status_code
        == 201
    )
    assert team.http.post(f"/api/v1/experiments/{exp}/delete", headers=team.as_("alice")).status_code == 200


def test_default_role_none_hides_what_was_not_granted(private_team: Team) -> None:
    t = private_team
    exp = t.experiment("alice", "alices")
    bobs = t.experiment("bob", "bobs")

    def names(who: str) -> set[str]:
        return {
            e["name"] for e in t.http.get("/api/v1/experiments", headers=t.as_(who)).json()["experiments"]
        }

    assert names("alice") == {"alices"} and names("bob") == {"bobs"}
    assert names("root") == {"Default", "alices", "bobs"}
    _error(
        t.http.get(f"/api/v1/experiments/{exp}", headers=t.as_("bob")), 403, "PERMISSION_DENIED", "no role"
    )
    _error(t.http.get("/api/v1/experiments/by-name/alices", headers=t.as_("bob")), 403, "PERMISSION_DENIED")
    _error(t.http.post("/api/v1/runs/search", json={"experiment_ids": [bobs, exp]}, headers=t.as_("bob")), 403,
           "PERMISSION_DENIED", f"experiment {exp}")  # fmt: skip
    assert t.http.put(f"/api/v1/permissions/experiment/{exp}/bob", json={"role": "READ"},
                      headers=t.as_("alice")).status_code == 200  # fmt: skip
    assert names("bob") == {"alices", "bobs"}


def test_artifact_routes_need_edit_to_write_and_read_to_read(team: Team) -> None:
    exp = team.experiment("alice")
    run = team.run("alice", exp)
    put = f"/api/v1/runs/{run}/artifacts/notes.txt"
    assert team.http.put(put, content=b"hello", headers=team.as_("alice")).status_code == 200
    _error(team.http.put(put, content=b"evil", headers=team.as_("bob")), 403, "PERMISSION_DENIED")
    _error(team.http.delete(put, headers=team.as_("bob")), 403, "PERMISSION_DENIED")
    start = {"path": "big.bin", "size": 10}
    _error(team.http.post(f"/api/v1/runs/{run}/artifact-uploads", json=start, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    assert team.http.get(put, headers=team.as_("bob")).content == b"hello"  # READ may download

    # The MLflow artifact proxy applies the same rules.
    mlflow_path = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/notes.txt"
    denied = team.http.put(mlflow_path, content=b"evil", headers=team.as_("bob"))
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    assert team.http.get(mlflow_path, headers=team.as_("bob")).content == b"hello"
    assert team.http.put(mlflow_path, content=b"v2", headers=team.as_("alice")).status_code == 200
    assert team.http.get(put, headers=team.as_("bob")).content == b"v2"


def test_mlflow_routes_enforce_the_same_roles(team: Team) -> None:
    exp = team.experiment("alice")
    run = team.run("alice", exp)
    metric = {"run_id": run, "key": "m", "value": 1.0, "timestamp": 0, "step": 0}
    ok = team.http.post("/api/2.0/mlflow/runs/log-metric", json=metric, headers=team.as_("alice"))
    assert ok.status_code == 200, ok.text
    denied = team.http.post("/api/2.0/mlflow/runs/log-metric", json=metric, headers=team.as_("bob"))
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    got = team.http.get("/api/2.0/mlflow/runs/get", params={"run_id": run}, headers=team.as_("bob"))
    assert got.status_code == 200 and got.json()["run"]["data"]["metrics"][0]["key"] == "m"
    created = team.http.post(
        "/api/2.0/mlflow/experiments/create", json={"name": "bobs"}, headers=team.as_("bob")
    )
    assert created.status_code == 200
    assert team.accounts.list_permissions("bob")[0].role is Role.MANAGE


def test_admin_only_routes(team: Team) -> None:
    for method, path in (("GET", "/api/v1/users"), ("GET", "/api/v1/audit"), ("DELETE", "/api/v1/users/bob"),
                         ("GET", "/api/v1/runs/deleted")):  # fmt: skip
        _error(team.http.request(method, path, headers=team.as_("alice")), 403, "PERMISSION_DENIED", "admin")
    _error(team.http.post("/api/v1/users", json={"username": "eve"}, headers=team.as_("alice")), 403,
           "PERMISSION_DENIED")  # fmt: skip
    made = team.http.post("/api/v1/users", json={"username": "eve"}, headers=team.as_("root"))
    assert made.status_code == 201 and made.json()["username"] == "eve"
    _error(team.http.post("/api/v1/users", json={"username": "eve"}, headers=team.as_("root")), 409,
           "RESOURCE_ALREADY_EXISTS")  # fmt: skip
    _error(team.http.post("/api/v1/users", json={"username": "bad name!"}, headers=team.as_("root")), 400,
           "INVALID_PARAMETER_VALUE", "Invalid username")  # fmt: skip
    users = team.http.get("/api/v1/users", headers=team.as_("root")).json()["users"]
    assert [u["username"] for u in users] == ["alice", "bob", "eve", "root"]
    assert team.http.delete("/api/v1/users/bob", headers=team.as_("root")).status_code == 200
    _error(team.http.get("/api/v1/users/me", headers=team.as_("bob")), 401, "UNAUTHENTICATED")


def test_audit_log_records_every_write_with_who_what_and_outcome(team: Team) -> None:
    exp = team.experiment("alice")
    run = team.run("alice", exp)
    team.http.post(f"/api/v1/runs/{run}/log-batch", json={"params": [{"key": "lr", "value": "0.1"}]},
                   headers=team.as_("bob"))  # fmt: skip  # refused
    team.http.post("/api/v1/experiments", json={"name": "x"})  # no token
    team.http.get(f"/api/v1/runs/{run}", headers=team.as_("bob"))  # a read: not audited
    entries = team.http.get("/api/v1/audit", headers=team.as_("root")).json()["entries"]
    summary = [(e["username"], e["method"], e["path"], e["status"]) for e in entries]
    assert summary == [
        (None, "POST", "/api/v1/experiments", 401),
        ("bob", "POST", f"/api/v1/runs/{run}/log-batch", 403),
        ("alice", "POST", "/api/v1/runs", 201),
        ("alice", "POST", "/api/v1/experiments", 201),
    ]
    assert f"run:{run}" in entries[1]["targets"] and f"experiment:{exp}" in entries[1]["targets"]
    assert entries[3]["targets"] == f"experiment:{exp}"
    assert all(e["time"] > 0 and e["client"] for e in entries)
    only_bob = team.http.get("/api/v1/audit", params={"username": "bob"}, headers=team.as_("root")).json()
    assert [e["status"] for e in only_bob["entries"]] == [403]


def test_purging_an_experiment_drops_its_grants(team: Team) -> None:
    exp = team.experiment("alice")
    team.accounts.set_permission("bob", "experiment", exp, Role.EDIT)  # type: ignore[arg-type]
    assert team.http.post(f"/api/v1/experiments/{exp}/delete", headers=team.as_("alice")).status_code == 200
    assert team.http.post(f"/api/v1/experiments/{exp}/purge", headers=team.as_("alice")).status_code == 200
    assert team.accounts.list_permissions(resource_id=exp) == []


def test_auth_off_means_no_checks_and_anonymous_admin(tmp_path: Path) -> None:
    app = create_app(
        ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'open.db'}", artifacts_uri=str(tmp_path))
    )
    with TestClient(app) as http:
        assert http.get("/api/v1/users/me").json() == {
            "username": None,
            "is_admin": True,
            "auth_enabled": False,
        }
        assert http.post("/api/v1/users", json={"username": "alice"}).status_code == 201  # prepare accounts
        _error(http.post("/api/v1/tokens", json={}), 400, "INVALID_PARAMETER_VALUE", "Say whose token")
        assert http.post("/api/v1/tokens", json={"username": "alice"}).status_code == 201
        assert http.post("/api/v1/runs", json={"experiment_id": "0"}).status_code == 201


def test_roles_on_registered_models(team: Team) -> None:
    made = team.http.post("/api/v1/models", json={"name": "churn"}, headers=team.as_("alice"))
    assert made.status_code == 201
    version = {"source": "s3://bucket/churn/1"}
    created = team.http.post("/api/v1/models/churn/versions", json=version, headers=team.as_("alice"))
    assert created.status_code == 201 and created.json()["created_by"] == "alice"
    assert team.http.get("/api/v1/models/churn/versions/1", headers=team.as_("bob")).status_code == 200
    _error(team.http.post("/api/v1/models/churn/versions", json=version, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED", "registered model churn", "needs EDIT")  # fmt: skip
    mlflow_create = {"name": "churn", "source": "s3://bucket/churn/2"}
    denied = team.http.post(
        "/api/2.0/mlflow/model-versions/create", json=mlflow_create, headers=team.as_("bob")
    )
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    grant = team.http.put("/api/v1/permissions/registered_model/churn/bob", json={"role": "EDIT"},
                          headers=team.as_("alice"))  # fmt: skip
    assert grant.status_code == 200
    moved = team.http.post(
        "/api/v1/models/churn/versions/1/stage", json={"stage": "Staging"}, headers=team.as_("bob")
    )
    assert moved.status_code == 200
    history = team.http.get("/api/v1/models/churn/stage-history", headers=team.as_("bob")).json()[
        "transitions"
    ]
    assert history[0]["user"] == "bob"
    _error(team.http.put("/api/v1/models/churn/gates", json={"rules": []}, headers=team.as_("bob")), 403,
           "PERMISSION_DENIED", "needs MANAGE")  # fmt: skip
    _error(team.http.delete("/api/v1/models/churn", headers=team.as_("bob")), 403, "PERMISSION_DENIED")
    entries = team.http.get("/api/v1/audit", params={"username": "bob"}, headers=team.as_("root")).json()
    assert any("model:churn" in e["targets"] for e in entries["entries"])


def test_default_role_none_hides_registered_models(private_team: Team) -> None:
    t = private_team
    assert (
        t.http.post("/api/v1/models", json={"name": "secret-model"}, headers=t.as_("alice")).status_code
        == 201
    )
    listed = t.http.get("/api/v1/models", headers=t.as_("bob")).json()["registered_models"]
    assert listed == []
    assert [
        m["name"] for m in t.http.get("/api/v1/models", headers=t.as_("alice")).json()["registered_models"]
    ] == ["secret-model"]
    _error(
        t.http.get("/api/v1/models/secret-model", headers=t.as_("bob")), 403, "PERMISSION_DENIED", "no role"
    )
