"""Fixtures for the pipeline tests: a real two-node Ray cluster for the Ray executor."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

MB = 1024 * 1024


@pytest.fixture(scope="session")
def ray_cluster_address() -> Iterator[str]:
    """A real two-node Ray cluster on this machine: head on 127.0.0.2, worker on 127.0.0.3.

    Yields the GCS address "127.0.0.2:PORT" (what `ray.init(address=...)` and `--address` take). Each node
    has 1 CPU, no GPU, an 80 MiB object store and a custom resource naming it ("node_a", "node_b"). Never
    127.0.0.1 (Ray advertises the machine's external address instead and hangs), never `ray stop` (it kills
    every Ray process on the machine). About 1 GB of memory and 6 s to start, so one per session.
    """
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Set before the first node starts: the Ray daemons inherit this process's environment.
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Its own short temp folder: AF_UNIX socket paths must stay under 108 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # Ray also records the newest cluster's address in /tmp/ray, whatever temp_dir says, and fails where
    # that folder does not exist yet (a fresh machine).
    from ray._private.utils import get_ray_address_file

    os.makedirs(os.path.dirname(get_ray_address_file(None)), exist_ok=True)
    node_args: dict[str, Any] = dict(num_cpus=1, num_gpus=0, object_store_memory=80 * MB, temp_dir=temp_dir)
    cluster = Cluster(
        initialize_head=True,
        shutdown_at_exit=True,
        head_node_args=dict(
            node_ip_address="127.0.0.2", include_dashboard=False, resources={"node_a": 1}, **node_args
        ),
    )
    try:
        cluster.add_node(node_ip_address="127.0.0.3", resources={"node_b": 1}, **node_args)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        if ray.is_initialized():  # a test or the code under test left a driver connected
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
