"""With `--auth`, an experiment's artifact location (where the server writes its uploads) is chosen by admins;
anyone else gets the default, or a folder of its own under an allowed prefix (`--artifact-location-prefix`).
Through the real app, on the REST API v1 and the MLflow API alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from modelyard.errors import InvalidArgument
from modelyard.schemas.accounts import Role
from modelyard.server import ServerSettings, create_app
from modelyard.server.locations import canonical, is_under
from tests.server.test_auth import Team, _error

MLFLOW_CREATE = "/api/2.0/mlflow/experiments/create"


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    """No prefix allowed: only admins choose locations."""
    t = Team(tmp_path, None)  # bob and alice hold no grant on anything but their own experiments
    with t.http:
        yield t


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    (tmp_path / "shared").mkdir()
    return tmp_path / "shared"


@pytest.fixture
def prefixed(tmp_path: Path, shared: Path) -> Iterator[Team]:
    """Locations allowed under a local folder and an S3 prefix."""
    t = Team(tmp_path, None, prefixes=(str(shared), "s3://team-bucket/exps"))
    with t.http:
        yield t


def _create(t: Team, who: str, name: str, location: str | None) -> httpx.Response:
    body = {"name": name, **({"artifact_location": location} if location is not None else {})}
    return t.http.post("/api/v1/experiments", json=body, headers=t.as_(who))


def _mlflow_create(t: Team, who: str, name: str, location: str) -> httpx.Response:
    return t.http.post(MLFLOW_CREATE, json={"name": name, "artifact_location": location}, headers=t.as_(who))


def _upload(t: Team, who: str, experiment_id: str, content: bytes) -> None:
    run = t.run(who, experiment_id)
    put = t.http.put(f"/api/v1/runs/{run}/artifacts/loot.txt", content=content, headers=t.as_(who))
    assert put.status_code == 200, put.text


def _location(t: Team, experiment_id: str) -> str:
    got = t.http.get(f"/api/v1/experiments/{experiment_id}", headers=t.as_("root"))
    return str(got.json()["artifact_location"])


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- no prefix allowed: the default or nothing -------------------------------------------------------------


def test_a_user_cannot_send_uploads_outside_the_artifact_root(team: Team, tmp_path: Path) -> None:
    """The reported case: a user with no grants pointed an experiment at a folder outside the root, and at
    another user's artifact folder, and the uploads landed there."""
    elsewhere = tmp_path / "elsewhere"
    alices = team.experiment("alice", "alices")
    alices_folder = _location(team, alices)
    assert Path(alices_folder).parent == team.artifacts

    for location in (str(elsewhere), elsewhere.as_uri(), alices_folder, f"{team.artifacts}/../elsewhere",
                     "s3://any-bucket/x", "relative/folder"):  # fmt: skip
        refused = _create(team, "bob", "bobs", location)
        _error(refused, 403, "PERMISSION_DENIED", "Only an admin may choose where an experiment's artifacts",
               "'bob'", "Leave artifact_location out", "--artifact-location-prefix")  # fmt: skip
        mlflow = _mlflow_create(team, "bob", "bobs", location)
        assert mlflow.status_code == 403, mlflow.text
        assert mlflow.json()["error_code"] == "PERMISSION_DENIED"
        assert "Only an admin" in mlflow.json()["message"]
    assert team.http.get("/api/v1/experiments/by-name/bobs", headers=team.as_("root")).status_code == 404
    assert not elsewhere.exists()

    # Without a location (or with MLflow's own proxy URI) bob gets a folder of his own under the root.
    made = _create(team, "bob", "bobs", None)
    assert made.status_code == 201, made.text
    bobs = made.json()["experiment_id"]
    _upload(team, "bob", bobs, b"mine")
    assert _location(team, bobs) == f"{team.artifacts}/{bobs}"
    proxied = _mlflow_create(team, "bob", "bobs-mlflow", "mlflow-artifacts:/somewhere")
    assert proxied.status_code == 200, proxied.text
    assert _location(team, proxied.json()["experiment_id"]).startswith(f"{team.artifacts}/")
    assert _files_under(Path(alices_folder)) == []


def test_admins_still_choose_any_location(team: Team, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    made = _create(team, "root", "roots", str(chosen))
    assert made.status_code == 201, made.text
    _upload(team, "root", made.json()["experiment_id"], b"by an admin")
    assert [p.read_bytes() for p in _files_under(chosen)] == [b"by an admin"]
    assert _mlflow_create(team, "root", "roots-mlflow", str(tmp_path / "other")).status_code == 200


def test_without_auth_any_location_goes_as_before(tmp_path: Path) -> None:
    app = create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'open.db'}",
                                    artifacts_uri=str(tmp_path / "artifacts")))  # fmt: skip
    with TestClient(app) as http:
        made = http.post("/api/v1/experiments", json={"name": "x", "artifact_location": str(tmp_path / "x")})
        assert made.status_code == 201, made.text
        mlflow = http.post(MLFLOW_CREATE, json={"name": "y", "artifact_location": str(tmp_path / "y")})
        assert mlflow.status_code == 200, mlflow.text


# -- prefixes allowed --------------------------------------------------------------------------------------


def test_a_location_under_an_allowed_prefix_is_accepted(prefixed: Team, shared: Path) -> None:
    t = prefixed
    made = _create(t, "bob", "bobs", str(shared / "bob"))
    assert made.status_code == 201, made.text
    _upload(t, "bob", made.json()["experiment_id"], b"shared")
    assert [p.read_bytes() for p in _files_under(shared / "bob")] == [b"shared"]
    assert _create(t, "bob", "bobs-uri", (shared / "bob2").as_uri()).status_code == 201
    assert _create(t, "bob", "bobs-s3", "s3://team-bucket/exps/bob").status_code == 201
    mlflow = _mlflow_create(t, "alice", "alices", str(shared / "alice"))
    assert mlflow.status_code == 200, mlflow.text
    assert _location(t, mlflow.json()["experiment_id"]) == str(shared / "alice")


def test_prefixes_match_whole_components_with_symlinks_resolved(
    prefixed: Team, shared: Path, tmp_path: Path
) -> None:
    t = prefixed
    (tmp_path / "outside").mkdir()
    (shared / "escape").symlink_to(tmp_path / "outside")
    for location in (
        f"{shared}-other/x",  # /shared-other is not under /shared
        str(shared),  # the prefix itself: one experiment would take everyone's place
        str(shared / "escape" / "x"),  # a link inside the prefix to a folder outside it
        str(tmp_path / "elsewhere"),
        "s3://team-bucket/exps-other/x",
        "s3://team-bucket/exps",
        "s3://other-bucket/exps/x",
        "gs://team-bucket/exps/x",
    ):
        for refused in (_create(t, "bob", "bobs", location), _mlflow_create(t, "bob", "bobs", location)):
            _error(refused, 403, "PERMISSION_DENIED", "only in a folder under", str(shared),
                   "s3://team-bucket/exps", "Leave artifact_location out")  # fmt: skip
    malformed = (f"{shared}/../elsewhere", f"{shared}/a/%2e%2e/b", "s3://team-bucket/exps/%2e%2e/x",
                 "s3://team-bucket/exps/x/../../y", "shared/x", "~/x", "s3://team-bucket/exps/x?v=1")  # fmt: skip
    for location in malformed:
        for refused in (_create(t, "bob", "bobs", location), _mlflow_create(t, "bob", "bobs", location)):
            assert refused.status_code == 400, (location, refused.text)
    assert not (tmp_path / "elsewhere").exists()
    assert _files_under(tmp_path / "outside") == []


def test_a_location_may_not_overlap_another_experiment_or_the_root(tmp_path: Path) -> None:
    """Inside another experiment's folder (or around it) the experiment-level artifact routes would reach
    that experiment's files; inside the root, a future experiment's default folder."""
    t = Team(tmp_path, Role.READ, prefixes=(str(tmp_path),))  # the prefix holds the artifact root
    with t.http:
        alices = _create(t, "alice", "alices", str(tmp_path / "team" / "alice"))
        assert alices.status_code == 201, alices.text
        defaults = t.experiment("alice", "alices-default")
        for location in (
            str(tmp_path / "team" / "alice" / "sub"),
            str(tmp_path / "team"),  # around alice's folder
            str(t.artifacts),
            str(t.artifacts / defaults),
            str(t.artifacts / "999"),  # a future experiment's default folder
        ):
            for refused in (_create(t, "bob", "bobs", location), _mlflow_create(t, "bob", "bobs", location)):
                _error(refused, 403, "PERMISSION_DENIED", "inside, or contains", "folder of its own")
        # deleted experiments keep their files: their folders stay taken
        gone = _create(t, "alice", "gone", str(tmp_path / "team" / "gone"))
        gone_id = gone.json()["experiment_id"]
        assert t.http.post(f"/api/v1/experiments/{gone_id}/delete", headers=t.as_("alice")).status_code == 200
        _error(_create(t, "bob", "bobs", str(tmp_path / "team" / "gone" / "x")), 403, "PERMISSION_DENIED")
        assert _create(t, "bob", "bobs", str(tmp_path / "team" / "bob")).status_code == 201


def test_a_malformed_prefix_stops_the_server_at_start(tmp_path: Path) -> None:
    for prefix in ("relative/folder", "s3://bucket/a/../b"):
        with pytest.raises(InvalidArgument, match="--artifact-location-prefix"):
            create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'x.db'}", auth=True,
                                      artifact_location_prefixes=(prefix,)))  # fmt: skip


@pytest.mark.parametrize(
    ("location", "prefix", "under"),
    [
        ("/data/art/x", "/data/art", True),
        ("/data/art", "/data/art", True),
        ("/data/art-other/x", "/data/art", False),
        ("/data/ar", "/data/art", False),
        ("file:///data/art/x", "/data/art/", True),
        ("/data//art/./x/", "file:///data/art", True),
        ("s3://bucket/prefix/x", "s3://bucket/prefix", True),
        ("s3://bucket/prefix-2/x", "s3://bucket/prefix", False),
        ("s3://bucket-2/prefix/x", "s3://bucket/prefix", False),
        ("s3://bucket/prefix/x", "gs://bucket/prefix", False),
        ("S3://bucket/prefix", "s3://bucket", True),
    ],
)
def test_under_a_prefix_compares_whole_components(location: str, prefix: str, under: bool) -> None:
    assert is_under(canonical(location), canonical(prefix)) is under
