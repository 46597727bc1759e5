"""`Rollout`: progressive delivery under load on the in-process app, with the embedded registry (SQLite in a
tmp MODELYARD_HOME): rollback on an injected error rate or disagreement, promotion to an alias or stage,
and the history recorded on the candidate's version."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from modelyard.cli.main import ModelyardGroup
from modelyard.cli.rollout import rollout
from modelyard.errors import GateFailed, InvalidArgument
from modelyard.registry import RegistryClient
from modelyard.serving import ServedModel
from modelyard.serving.rollout import (
    Guards,
    Rollout,
    RolloutPlan,
    StepReport,
    parse_duration,
    parse_fraction,
)
from tests.server.live import free_port
from tests.serving.conftest import app_client
from tests.serving.models import Flaky, Offset
from tests.serving.test_follow import load, primary, register
from tests.serving.test_metrics import rows_request
from tests.serving.test_serve_cli import REPO

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"hold": 0.3, "check_interval": 0.05}


def candidate(version: str) -> list[ServedModel]:
    """The candidate, served as the canary."""
    model = primary(version)
    model.role = "canary"
    return [model]


async def run(plan: RolloutPlan, *models: ServedModel, agreement: bool = False):
    """Serve `models` under load while `plan` runs, and a little longer; (the result, the deployment, the
    answers, the answers that came after the rollout ended)."""
    async with app_client(*models) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        if agreement:
            deployment.mirror("m", plan.candidate)
        steps: list[StepReport] = []
        async with load(client, workers=6) as answers:
            result = await Rollout(deployment, plan, on_step=steps.append).run()
            ended = len(answers) + 6  # those in flight may still come from the candidate
            await asyncio.sleep(0.2)
        assert steps == result.steps
        return result, deployment, answers, answers[ended:]


async def test_an_injected_error_rate_rolls_back_and_records_why():
    registry = RegistryClient()
    one = register(Offset(0.0))
    two = register(Flaky(), signature=primary(one).signature)  # Flaky fails 30% of these requests
    registry.set_alias("m", "champion", one)
    plan = RolloutPlan(
        "m", two, guards=Guards(max_error_rate=0.05, min_requests=30), registry_name="m",
        registry_version=int(two), promote_alias="champion", **FAST,
    )  # fmt: skip
    result, deployment, answers, after = await run(plan, primary(one), *candidate(two))
    assert result.outcome == "rolled back" and "error rate" in (result.reason or "")
    assert len(result.steps) == 1 and result.steps[0].decision == "rollback"
    assert result.steps[0].traffic.error_rate > 0.05
    assert deployment.versions("m") == [one] and deployment.split("m").canary is None
    assert len(after) > 20  # after the rollback only the current version answers, and it never fails
    assert {a.version for a in after} == {one} and {a.status for a in after} == {200}
    assert {a.status for a in answers if a.version == one} == {200}
    assert registry.get_version_by_alias("m", "champion").version == int(one)  # not promoted
    tags = registry.get_model_version("m", two).tags
    assert tags["rollout.state"].startswith("rolled back") and "error rate" in tags["rollout.reason"]
    assert tags["rollout.step.1"].startswith("10%") and "-> rollback" in tags["rollout.step.1"]
    events = [e for e in registry.events("m") if e.type == "model_version.tag_set" and e.version == int(two)]
    assert [e.payload["key"] for e in events] == [
        "rollout.state",
        "rollout.step.1",
        "rollout.reason",
        "rollout.state",
    ]


async def test_a_healthy_candidate_is_promoted_step_by_step():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(0.0))
    registry.transition_stage("m", one, "Production")
    plan = RolloutPlan(
        "m", two, guards=Guards(max_error_rate=0.0, max_p99_ms=2000, min_agreement=0.99, min_requests=20),
        registry_name="m", registry_version=int(two), promote_stage="Production", **FAST,
    )  # fmt: skip
    old = primary(one)
    result, deployment, answers, after = await run(plan, old, *candidate(two), agreement=True)
    assert result.outcome == "promoted" and result.reason is None
    assert [(s.percent, s.decision) for s in result.steps] == [(10, "next"), (50, "next"), (100, "promote")]
    assert all(s.traffic.requests >= 20 and s.seconds >= 0.3 for s in result.steps)
    assert result.steps[0].agreement is not None and result.steps[0].agreement.agreement == 1.0
    assert {a.status for a in answers} == {200} and {a.version for a in after} == {two}
    assert deployment.get("m").version == two and old.batcher.closing
    assert registry.get_model_version("m", two).stage.value == "Production"
    assert registry.get_model_version("m", one).stage.value == "Archived"
    tags = registry.get_model_version("m", two).tags
    assert tags["rollout.state"].startswith("promoted to Production")
    assert "agreement 100%" in tags["rollout.step.1"] and tags["rollout.step.3"].endswith("-> promote")


async def test_a_candidate_that_disagrees_on_mirrored_traffic_is_rolled_back():
    one, two = register(Offset(0.0)), register(Offset(1.0))
    plan = RolloutPlan("m", two, guards=Guards(min_agreement=0.9, min_requests=20), **FAST)
    result, deployment, _, _ = await run(plan, primary(one), *candidate(two), agreement=True)
    assert result.outcome == "rolled back" and "agreement 0% < 90%" in (result.reason or "")
    assert deployment.versions("m") == [one]


async def test_a_gate_that_would_refuse_the_promotion_stops_the_rollout_before_it_starts():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(0.0))
    registry.set_gates("m", ["tags.validated == 'true'"])
    plan = RolloutPlan(
        "m", two, registry_name="m", registry_version=int(two), promote_alias="champion", **FAST
    )
    async with app_client(primary(one), *candidate(two)) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        with pytest.raises(GateFailed, match=r"so it was not started: `tags\.validated == 'true'` failed"):
            await Rollout(deployment, plan).run()
        assert deployment.split("m").percent == 0


async def test_cancelling_a_rollout_records_it_as_aborted():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(0.0))
    plan = RolloutPlan("m", two, registry_name="m", registry_version=int(two), hold=60, check_interval=0.05)
    async with app_client(primary(one), *candidate(two)) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        task = asyncio.ensure_future(Rollout(deployment, plan).run())
        await asyncio.sleep(0.2)
        assert deployment.split("m").percent == 10
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert deployment.split("m").percent == 0
    assert registry.get_model_version("m", two).tags["rollout.state"].startswith("aborted")


def test_plans_and_guards_are_checked():
    for steps in [(), (50, 10, 100), (10, 50), (0, 100), (10, 10, 100)]:
        with pytest.raises(InvalidArgument, match="step"):
            RolloutPlan("m", "2", steps=steps)
    with pytest.raises(InvalidArgument, match="alias or to a stage"):
        RolloutPlan(
            "m", "2", registry_name="m", registry_version=2, promote_alias="a", promote_stage="Staging"
        )
    with pytest.raises(InvalidArgument, match="registry version"):
        RolloutPlan("m", "2", promote_alias="champion")
    with pytest.raises(InvalidArgument, match="fraction"):
        Guards(max_error_rate=5)
    assert parse_duration("30s") == 30 and parse_duration("5m") == 300 and parse_duration("250ms") == 0.25
    assert parse_duration("2") == 2 and parse_duration("1h") == 3600
    with pytest.raises(InvalidArgument, match="not a duration"):
        parse_duration("soon")
    assert parse_fraction("1%", "x") == 0.01 and parse_fraction("0.05", "x") == 0.05
    with pytest.raises(InvalidArgument, match="not a fraction"):
        parse_fraction("150%", "The maximum error rate")


async def test_the_candidate_must_be_the_canary():
    one, two = register(Offset(0.0)), register(Offset(0.0))
    extra = primary(two)
    extra.role = "version"
    async with app_client(primary(one), extra) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        with pytest.raises(InvalidArgument, match="must be served as its canary"):
            Rollout(deployment, RolloutPlan("m", two))


# -- the command ------------------------------------------------------------------------------------------------


def cli_with_rollout() -> click.Group:
    """A root group like `modelyard`'s, holding only `rollout` (errors become one red line)."""
    group = ModelyardGroup("modelyard")
    group.add_command(rollout)
    return group


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models:/m@champion", "runs:/abc/model"], "CANDIDATE_URI must be a registry version"),
        (["models:/m/1", "models:/m/2"], "Say where to promote the candidate: --alias NAME or --stage"),
        (
            ["models:/m@champion", "models:/m/1"],
            "is the version models:/m@champion names: nothing to roll out",
        ),
        (["models:/m@champion", "models:/m/2", "--steps", "50,10"], "write increasing percentages ending"),
        (["models:/m@champion", "models:/m/2", "--steps", "10,50"], "ending with 100"),
        (["models:/m@champion", "models:/m/2", "--hold", "soon"], "'soon' is not a duration"),
        (
            ["models:/m@champion", "models:/m/2", "--max-error-rate", "2"],
            "The maximum error rate '2' is not a",
        ),
        (["models:/m@champion", "models:/m/9"], "has no version"),
        (["models:/m/1", "models:/m/2", "--alias", "champion"], "so it was not started: `tags.validated"),
    ],
)
def test_command_errors_are_one_line(args, message):
    registry = RegistryClient()
    one, _ = register(Offset(0.0)), register(Offset(0.0))
    registry.set_alias("m", "champion", one)
    registry.set_gates("m", [{"rule": "tags.validated == 'true'", "on": ["@champion"]}])
    if "--alias" not in args:
        registry.set_gates("m", [])
    result = CliRunner().invoke(cli_with_rollout(), ["rollout", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output, result.output


def test_help_has_examples():
    result = CliRunner().invoke(rollout, ["--help"])
    assert result.exit_code == 0
    for text in ("models:/iris@champion models:/iris/5", "--max-p99-ms", "--min-agreement", "--exit-when-done",
                 "--max-batch-size", "modelyard models events"):  # fmt: skip
        assert text in result.output


@pytest.mark.slow
def test_the_command_serves_promotes_and_exits():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(0.0))
    registry.set_alias("m", "champion", one)
    port = free_port()
    log = Path(os.environ["MODELYARD_HOME"]).parent / "rollout.log"
    code = "import sys; from modelyard.cli.rollout import rollout; rollout(sys.argv[1:])"
    args = ["models:/m@champion", f"models:/m/{two}", "--trusted", "--port", str(port), "--steps", "50,100",
            "--hold", "0.5s", "--min-requests", "20", "--min-agreement", "99%", "--exit-when-done"]  # fmt: skip
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    statuses: list[int] = []
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        while process.poll() is None and time.monotonic() < deadline:
            try:
                response = http.post("/v2/models/m/infer", json=rows_request(np.ones((1, 3))))
                statuses.append(response.status_code)
            except httpx.TransportError:
                time.sleep(0.05)  # starting, or stopped after the promotion
    if process.poll() is None:
        process.kill()
    text = log.read_text(errors="replace")
    assert process.wait() == 0, text
    assert set(statuses) == {200} and len(statuses) > 40, text
    assert (
        "ok step 1/2  50%" in text
        and "ok step 2/2  100%" in text
        and "Promoted m version 2 to @champion" in text
    )
    assert registry.get_version_by_alias("m", "champion").version == int(two)
