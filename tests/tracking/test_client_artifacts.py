"""Artifacts through the tracking client: files, folders, text, dicts, figures, images; local and S3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import modelyard as my


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> my.Client:
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        monkeypatch.setenv("MODELYARD_ARTIFACT_URI", f"{bucket}/artifacts")
    return my.Client()


def test_files_folders_text_and_dicts(client: my.Client, tmp_path: Path) -> None:
    run_id = client.create_run(client.create_experiment("art")).run_id
    if "s3" in str(client.get_run(run_id).info.artifact_uri):
        assert client.get_run(run_id).info.artifact_uri.startswith("s3://")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01" * 1000)
    client.log_artifact(run_id, weights, "model")
    folder = tmp_path / "report"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    client.log_artifacts(run_id, folder, "report")
    client.log_text(run_id, "hello ✓", "notes/readme.md")
    client.log_dict(run_id, {"lr": 0.1, "layers": [1, 2]}, "config.json")
    client.log_dict(run_id, {"lr": 0.1}, "config.yaml")

    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {
        ("model", True),
        ("report", True),
        ("notes", True),
        ("config.json", False),
        ("config.yaml", False),
    }
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "model")] == [
        ("model/weights.bin", 2000)
    ]

    out = client.download_artifacts(run_id, "", tmp_path / "dl")
    assert (out / "model" / "weights.bin").read_bytes() == weights.read_bytes()
    assert (out / "report" / "sub" / "b.txt").read_text() == "b"
    assert (out / "notes" / "readme.md").read_text(encoding="utf-8") == "hello ✓"
    assert json.loads((out / "config.json").read_text()) == {"lr": 0.1, "layers": [1, 2]}
    assert yaml.safe_load((out / "config.yaml").read_text()) == {"lr": 0.1}


def test_figure_and_image(client: my.Client, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    run_id = client.create_run("0").run_id
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    client.log_figure(run_id, fig, "plots/loss.png")
    with pytest.raises(
        my.InvalidArgument, match=r"Cannot save the figure as 'plots/loss\.txt': Format 'txt'"
    ):
        client.log_figure(run_id, fig, "plots/loss.txt")
    plt.close(fig)
    with pytest.raises(my.InvalidArgument, match=r"takes a matplotlib figure .* not NoneType"):
        client.log_figure(run_id, None, "plots/none.png")
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/loss.png"]
    client.log_image(run_id, np.linspace(0, 1, 64 * 48 * 3).reshape(64, 48, 3), "images/float.png")
    client.log_image(run_id, np.full((8, 8), 200, dtype=np.uint8), "images/gray.png")
    loss = Image.open(client.download_artifacts(run_id, "plots/loss.png", tmp_path))
    assert loss.format == "PNG" and loss.size[0] > 100
    img = Image.open(client.download_artifacts(run_id, "images/float.png", tmp_path / "f"))
    assert img.size == (48, 64) and img.mode == "RGB"
    gray = np.asarray(Image.open(client.download_artifacts(run_id, "images/gray.png", tmp_path / "g")))
    assert gray.shape == (8, 8) and int(gray[0, 0]) == 200
    with pytest.raises(my.InvalidArgument, match=r"\[0, 1\]"):
        client.log_image(run_id, np.full((4, 4), 3.0), "bad.png")


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "a/../../b.txt"])
def test_paths_escaping_the_run_are_refused(client: my.Client, bad: str, tmp_path: Path) -> None:
    run_id = client.create_run("0").run_id
    with pytest.raises(my.InvalidArgument):
        client.log_text(run_id, "x", bad)
    assert client.list_artifacts(run_id) == []


def test_missing_local_files_are_clear_errors(client: my.Client, tmp_path: Path) -> None:
    run_id = client.create_run("0").run_id
    with pytest.raises(my.InvalidArgument, match="not a file"):
        client.log_artifact(run_id, tmp_path / "missing.bin")
    with pytest.raises(my.InvalidArgument, match="not a folder"):
        client.log_artifacts(run_id, tmp_path / "missing")


def test_purge_removes_artifacts(client: my.Client, tmp_path: Path) -> None:
    run_id = client.create_run("0").run_id
    client.log_text(run_id, "x", "x.txt")
    client.delete_run(run_id)
    client.purge_run(run_id)
    with pytest.raises(my.NotFound):
        client.get_run(run_id)
    from modelyard.artifacts import artifact_store_for

    root = client.get_experiment("0").artifact_location
    assert artifact_store_for(root).list(run_id) == []
    assert run_id not in [f.path for f in artifact_store_for(root).list()]  # the run's folder is gone too


def test_purging_one_experiment_spares_another_sharing_its_location(
    client: my.Client, tmp_path: Path
) -> None:
    shared = (tmp_path / "shared").as_uri()
    a = client.create_experiment("a", artifact_location=shared)
    b = client.create_experiment("b", artifact_location=shared)
    run_a = client.create_run(a).run_id
    run_b = client.create_run(b).run_id
    client.log_text(run_a, "a", "a.txt")
    client.log_text(run_b, "b", "b.txt")
    client.delete_experiment(a)
    client.purge_experiment(a)
    assert [f.path for f in client.list_artifacts(run_b)] == ["b.txt"]
    assert not (tmp_path / "shared" / run_a).exists()


def test_failed_download_leaves_no_temp_folder(client: my.Client) -> None:
    import glob
    import tempfile

    run_id = client.create_run("0").run_id
    pattern = str(Path(tempfile.gettempdir()) / "modelyard-*")
    before = set(glob.glob(pattern))
    with pytest.raises(my.NotFound):
        client.download_artifacts(run_id, "missing.txt")
    assert set(glob.glob(pattern)) == before


def test_purging_an_active_run_or_experiment_keeps_its_artifacts(client: my.Client) -> None:
    exp = client.create_experiment("keep")
    run_id = client.create_run(exp).run_id
    client.log_text(run_id, "x", "x.txt")
    with pytest.raises(my.ModelyardError, match="delete it before purging"):
        client.purge_run(run_id)
    with pytest.raises(my.ModelyardError, match="delete it before purging"):
        client.purge_experiment(exp)
    assert [f.path for f in client.list_artifacts(run_id)] == ["x.txt"]
