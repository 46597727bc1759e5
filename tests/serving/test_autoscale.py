"""Autoscaling on requests in flight per replica: the decision rule (window average, target, delays) on
readings the test gives, then a real ProcessRunner scaled up to MAX under load and back down to MIN."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.models import save_model
from modelyard.serving import BatchConfig, Runner, ServedModel, ThreadRunner
from modelyard.serving.autoscale import AutoscaleConfig, Autoscaler
from modelyard.serving.replicas import ProcessRunner
from tests.serving.conftest import oip, serving
from tests.serving.models import Slow
from tests.serving.test_metrics import scrape, value
from tests.serving.test_replicas import alive

pytestmark = pytest.mark.anyio


class ScalableRunner(Runner):
    """Records what it is scaled to; predicts nothing."""

    def __init__(self, replicas: int = 1) -> None:
        self.count = replicas
        self.calls: list[int] = []

    def predict(self, batch: Any) -> Any:
        return batch

    async def apredict(self, batch: Any) -> Any:
        return batch

    @property
    def replicas(self) -> int:
        return self.count

    def scale(self, replicas: int) -> None:
        self.calls.append(replicas)
        self.count = replicas


def scaled_model(runner: Runner) -> ServedModel:
    predictor = SimpleNamespace(predict=lambda x: x, signature=None)
    return ServedModel("iris", "1", predictor, runner=runner)


def feed(autoscaler: Autoscaler, start: int, end: int, in_flight: float) -> list[tuple[int, int]]:
    """One reading of `in_flight` per second (at `start`, ..., `end - 1`); the decisions: (when, to)."""
    decisions = []
    for now in range(start, end):
        decision = autoscaler.observe(now, in_flight)
        if decision is not None:
            decisions.append((now, decision.replicas_to))
    return decisions


def test_scales_to_the_window_mean_over_the_target_once_held_for_the_delays(caplog):
    caplog.set_level(logging.INFO, logger="modelyard.serving.autoscale")
    runner = ScalableRunner()
    config = AutoscaleConfig(1, 4, target=2, window=4, scale_up_delay=2, scale_down_delay=6)
    autoscaler = Autoscaler(scaled_model(runner), config)
    assert feed(autoscaler, 0, 4, 0.0) == [] and autoscaler.desired == 1
    # 10 in flight: the 4 s window's mean climbs 2.5, 5, 7.5, 10 -> recommends 2, 3, 4, 4 (MAX);
    # each step is taken once every recommendation of the last 2 s reached it
    assert feed(autoscaler, 4, 10, 10.0) == [(6, 2), (7, 3), (8, 4)]
    assert runner.calls == [2, 3, 4] and autoscaler.desired == 4
    # idle again: recommends 4, 3, 2, 1 from t=10; each step down waits until none of the last 6 s exceeded it
    assert feed(autoscaler, 10, 25, 0.0) == [(17, 3), (18, 2), (19, 1)]
    assert runner.count == 1 and autoscaler.counts == {"up": 3, "down": 3}
    assert [(d.replicas_from, d.replicas_to, d.direction, d.in_flight) for d in autoscaler.decisions][:1] == [
        (1, 2, "up", 7.5)
    ]
    assert caplog.messages[0] == (
        "Scaled iris/1 from 1 to 2 replicas: 7.5 requests in flight (mean over 4 s), 7.5 per replica, target 2"
    )
    assert len(caplog.messages) == 6


def test_a_spike_or_dip_shorter_than_the_delay_changes_nothing():
    runner = ScalableRunner()
    config = AutoscaleConfig(1, 3, target=1, window=1, scale_up_delay=2, scale_down_delay=3)
    autoscaler = Autoscaler(scaled_model(runner), config)  # window of one reading: recommends what it reads
    assert feed(autoscaler, 0, 3, 0.0) == []
    assert feed(autoscaler, 3, 5, 3.0) == []  # 2 readings: held 1 s, not 2
    assert feed(autoscaler, 5, 7, 0.0) == []
    assert feed(autoscaler, 7, 10, 3.0) == [(9, 3)]
    assert feed(autoscaler, 10, 12, 0.0) == []
    assert feed(autoscaler, 12, 14, 3.0) == []  # the dip lasted 2 readings: no step down
    assert feed(autoscaler, 14, 20, 0.0) == [(17, 1)]
    assert runner.calls == [3, 1]


def test_config_and_runner_are_checked():
    with pytest.raises(InvalidArgument, match="at least 1: scaling to zero"):
        AutoscaleConfig(0, 2)
    with pytest.raises(InvalidArgument, match="below min_replicas"):
        AutoscaleConfig(3, 2)
    with pytest.raises(InvalidArgument, match="target"):
        AutoscaleConfig(1, 2, target=0)
    with pytest.raises(InvalidArgument, match="ThreadRunner cannot scale"):
        Autoscaler(scaled_model(ThreadRunner(lambda x: x)))
    model = scaled_model(ScalableRunner(replicas=6))
    autoscaler = Autoscaler(model, AutoscaleConfig(1, 4))
    assert model.replicas == 4 and autoscaler.replicas == 4  # brought within the bounds at once
    with pytest.raises(InvalidArgument, match="already has an autoscaler"):
        Autoscaler(model)


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("autoscale") / "slow"
    save_model(Slow(0.05), folder, input_example=np.ones((2, 3)))
    return folder


def test_the_serve_options_reach_the_autoscaler(slow_folder):
    """`modelyard serve --autoscale 1:3 --scale-target 2 --scale-up-delay 1 --scale-down-delay 9
    --scale-window 12` builds this config; options left out keep their defaults."""
    from modelyard.cli.serve import _served_model

    scaling = {"scale_target": 2.0, "scale_up_delay": 1.0, "scale_down_delay": 9.0, "scale_window": 12.0}
    model = _served_model("slow", "1", str(slow_folder), BatchConfig(), True, None, (1, 3), scaling)
    try:
        assert model.batcher.autoscaler.config == AutoscaleConfig(
            1, 3, target=2.0, window=12.0, scale_up_delay=1.0, scale_down_delay=9.0
        )
    finally:
        model.runner.close()
    model = _served_model("slow", "1", str(slow_folder), BatchConfig(), True, None, (1, 2),
                          dict.fromkeys(scaling))  # fmt: skip
    try:
        assert model.batcher.autoscaler.config == AutoscaleConfig(1, 2)
    finally:
        model.runner.close()


async def test_load_scales_a_process_runner_up_to_max_and_back_down_to_min(slow_folder, caplog):
    caplog.set_level(logging.INFO, logger="modelyard.serving.autoscale")
    runner = ProcessRunner(slow_folder, 1, trusted=True, name="slow/1")
    model = ServedModel("slow", "1", runner, BatchConfig(max_batch_size=1), runner=runner)
    config = AutoscaleConfig(1, 3, target=1, window=0.3, scale_up_delay=0.1, scale_down_delay=0.5, tick=0.05)
    autoscaler = Autoscaler(model, config)
    loop = asyncio.get_running_loop()
    async with serving(model) as client:
        body = {"inputs": [oip("x", np.ones((1, 3)), "FP64")]}
        stop = asyncio.Event()

        async def client_loop() -> None:
            while not stop.is_set():
                response = await client.post("/v2/models/slow/infer", json=body)
                assert response.status_code == 200, response.text

        clients = [loop.create_task(client_loop()) for _ in range(6)]  # 6 in flight, target 1: MAX
        deadline = time.monotonic() + 15
        while runner.replicas < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        samples = await scrape(client)
        stop.set()
        await asyncio.gather(*clients)
        stopped, stopped_at = time.monotonic(), time.time()
        assert runner.replicas == 3, list(autoscaler.decisions)
        assert autoscaler.decisions[-1].replicas_to == 3
        assert value(samples, "modelyard_serving_desired_replicas", model="slow", version="1") == 3
        assert value(samples, "modelyard_serving_replicas", model="slow", version="1") == 3
        ups = value(samples, "modelyard_serving_autoscale_decisions_total", model="slow", version="1",
                    direction="up")  # fmt: skip
        assert ups == autoscaler.counts["up"] >= 1
        pids = runner.pids()
        while runner.replicas > 1 and time.monotonic() < stopped + 15:
            await asyncio.sleep(0.05)
        assert runner.replicas == 1, list(autoscaler.decisions)
        last = autoscaler.decisions[-1]
        assert last.replicas_to == 1 and last.direction == "down"
        assert last.at - stopped_at >= config.scale_down_delay - config.tick  # waited for the down delay
        samples = await scrape(client)
        assert value(samples, "modelyard_serving_autoscale_decisions_total", model="slow", version="1",
                     direction="down") == autoscaler.counts["down"] >= 1  # fmt: skip
        assert any(m.startswith("Scaled slow/1 from ") and " to 3 replicas" in m for m in caplog.messages)
    assert model.batcher.autoscaler is autoscaler and autoscaler.model.batcher.closing
    assert not any(alive(pid) for pid in pids)
