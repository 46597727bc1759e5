"""The quickstart: train a small classifier four ways, track every run, and release the best, in seconds.

It is the README's main example as a command. Each run logs its parameters, the train and validation datasets,
a per-epoch loss and accuracy curve, final accuracy and F1, a confusion-matrix figure and the fitted model
(Modelyard's model format, with its signature); then the runs are compared with a search ordered by accuracy,
the best model is registered, promoted to Production through a gate, aliased `champion`, and its lineage is
printed. scikit-learn's bundled digits dataset (8x8 images of handwritten digits) is used, so nothing is
downloaded.
"""

from __future__ import annotations

import re
import shlex
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import Console

    from modelyard.schemas import Run

EPOCHS = 15
# Learning rate and L2 penalty of an SGD logistic regression: a too-small, a good, a too-large step, and
# a good step with heavy regularisation.
SETTINGS: tuple[dict[str, float], ...] = (
    {"lr": 0.001, "alpha": 0.0001},
    {"lr": 0.01, "alpha": 0.0001},
    {"lr": 0.1, "alpha": 0.0001},
    {"lr": 0.01, "alpha": 0.05},
)
DATA_SOURCE = "sklearn.datasets.load_digits"
# The release gate: a version reaches Production only above this accuracy, and takes the champion alias only if
# it is at least as good as the current champion.
GATES = ("metrics.accuracy >= 0.9", "metrics.accuracy >= champion on @champion")
_EXTRAS = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "pandas": "pandas"}


@dataclass(frozen=True)
class _Data:
    X_train: Any
    X_val: Any
    y_train: Any
    y_val: Any
    train_frame: Any
    val_frame: Any
    classes: Any


def run(
    experiment: str = "quickstart",
    plot: bool = True,
    tracking_uri: str | None = None,
    console: Console | None = None,
) -> list[Run]:
    """Train and track one run per setting in `SETTINGS`; print a comparison; return the runs, best first."""
    import modelyard as my
    from modelyard import config

    _require_extras()
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    previous = my.get_tracking_uri()
    switch = tracking_uri is not None and tracking_uri != previous
    if switch:
        my.set_tracking_uri(tracking_uri)
    try:
        with console.status("Loading scikit-learn and the digits dataset..."):
            data = _load_data()
        run_ids = _train_all(experiment, data, plot, console)
        runs = _compare(experiment, run_ids)
        _table(console, experiment, runs)
        if runs:
            model_name = _model_name(experiment)
            _release(console, model_name, runs[0])
            _hints(console, experiment, model_name, runs[0], my.get_tracking_uri())
        return runs
    finally:
        if switch:
            my.set_tracking_uri(None if config.tracking_uri() == previous else previous)


def _require_extras() -> None:
    from importlib.util import find_spec

    from modelyard.errors import InvalidState

    missing = [dist for module, dist in _EXTRAS.items() if find_spec(module) is None]
    if missing:
        raise InvalidState(
            f"The quickstart needs {', '.join(missing)}. Install them with: pip install 'modelyard[quickstart]'"
        )


def _load_data() -> _Data:
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True, as_frame=True)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return _Data(
        X_train=X_train.to_numpy(dtype=float),
        X_val=X_val.to_numpy(dtype=float),
        y_train=y_train.to_numpy(),
        y_val=y_val.to_numpy(),
        train_frame=pd.concat([X_train, y_train], axis=1),
        val_frame=pd.concat([X_val, y_val], axis=1),
        classes=sorted(set(y.tolist())),
    )


def _run_name(setting: dict[str, float]) -> str:
    return f"lr{setting['lr']:g}-alpha{setting['alpha']:g}"


def _train_all(experiment: str, data: _Data, plot: bool, console: Console) -> list[str]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
    )
    run_ids = []
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("Training", total=len(SETTINGS) * EPOCHS)
        for i, setting in enumerate(SETTINGS, 1):
            name = _run_name(setting)
            progress.update(task, description=f"Run {i}/{len(SETTINGS)} [bold]{name}[/]")
            started = time.perf_counter()
            run_id, accuracy = _train_one(
                experiment, name, setting, data, plot, lambda: progress.advance(task)
            )
            progress.console.print(
                f"[green]✓[/] {name:<26} accuracy {accuracy:.3f}  [dim]({time.perf_counter() - started:.1f}s)[/]"
            )
            run_ids.append(run_id)
    return run_ids


def _train_one(
    experiment: str, name: str, setting: dict[str, float], data: _Data, plot: bool, on_epoch: Any
) -> tuple[str, float]:
    """One tracked run: `EPOCHS` passes of SGD, logged per epoch, then final metrics, figure and model."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    import modelyard as my

    params = {"model": "SGDClassifier", "loss": "log_loss", "epochs": EPOCHS, **setting}
    with my.start_run(experiment=experiment, name=name, params=params, tags={"quickstart": "true"}) as active:
        my.log_dataset(data.train_frame, name="digits-train", context="training", source=DATA_SOURCE)
        my.log_dataset(data.val_frame, name="digits-val", context="validation", source=DATA_SOURCE)

        scaler = StandardScaler().fit(data.X_train)
        X_train, X_val = scaler.transform(data.X_train), scaler.transform(data.X_val)
        clf = SGDClassifier(
            loss="log_loss",
            learning_rate="constant",
            eta0=setting["lr"],
            alpha=setting["alpha"],
            random_state=0,
        )
        rng = np.random.default_rng(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a too-large learning rate is part of the demonstration
            for epoch in range(1, EPOCHS + 1):
                order = rng.permutation(len(X_train))
                clf.partial_fit(X_train[order], data.y_train[order], classes=data.classes)
                proba = clf.predict_proba(X_train)
                my.log_metric("train_loss", log_loss(data.y_train, proba, labels=data.classes), step=epoch)
                my.log_metric("val_accuracy", accuracy_score(data.y_val, clf.predict(X_val)), step=epoch)
                on_epoch()

        predicted = clf.predict(X_val)
        accuracy = float(accuracy_score(data.y_val, predicted))
        my.log_metric("accuracy", accuracy)
        my.log_metric("f1", float(f1_score(data.y_val, predicted, average="macro")))
        if plot:
            matrix = confusion_matrix(data.y_val, predicted, labels=data.classes)
            my.log_figure(_confusion_figure(matrix, data.classes, name), "confusion_matrix.png")
        model = Pipeline([("scale", scaler), ("classify", clf)])
        my.log_model(model, "model", input_example=data.X_val[:5])
        return active.run_id, accuracy


def _confusion_figure(matrix: Any, labels: Any, title: str) -> Figure:
    """A confusion matrix drawn on a bare Figure: rendered by Agg, no pyplot and no global backend state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.6), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels=[str(label) for label in labels])
    ax.set_yticks(ticks, labels=[str(label) for label in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix: {title}", fontsize=10)
    threshold = matrix.max() / 2
    for (row, col), count in _cells(matrix):
        ax.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if count > threshold else "black",
        )
    return fig


def _cells(matrix: Any) -> list[tuple[tuple[int, int], int]]:
    return [((r, c), int(matrix[r, c])) for r in range(matrix.shape[0]) for c in range(matrix.shape[1])]


def _compare(experiment: str, run_ids: list[str]) -> list[Run]:
    """This quickstart's runs, best first: the same search `modelyard runs search` does."""
    import modelyard as my

    ids = ", ".join(f"'{run_id}'" for run_id in run_ids)
    runs: list[Run] = my.search_runs(
        experiment, filter=f"attributes.run_id IN ({ids})", order_by=["metrics.accuracy DESC"]
    )
    return runs


def _model_name(experiment: str) -> str:
    return re.sub(r"[^\w.\- ]", "-", f"{experiment}-digits").lstrip("-_. ") or "quickstart-digits"


def _release(console: Console, model_name: str, best: Run) -> None:
    """Register the best run's model, promote it to Production through the gate, alias it, show its lineage."""
    import modelyard as my
    from modelyard.cli.common import ID_STYLE, esc
    from modelyard.cli.models import lineage_tree

    registry = my.RegistryClient(my.get_tracking_uri())
    version = my.register_model(f"runs:/{best.run_id}/model", model_name).version
    registry.set_gates(model_name, [_gate(rule) for rule in GATES])
    console.print(f"\n[bold]Releasing the best run[/] as {esc(model_name)} version [{ID_STYLE}]{version}[/]")
    for check in registry.check_gates(model_name, version, "Production"):
        console.print(f"  [green]✓[/] gate [bold]{esc(check.rule)}[/]  [dim]{esc(check.detail)}[/]")
    registry.transition_stage(
        model_name, version, "Production", archive_existing=True, comment="best quickstart run"
    )
    registry.set_alias(model_name, "champion", version)
    console.print(f"  [green]✓[/] in Production as models:/{esc(model_name)}@champion. Where it came from:")
    console.print(lineage_tree(my.lineage(f"models:/{model_name}/{version}", my.get_tracking_uri())))


def _gate(text: str) -> dict[str, object]:
    rule, _, target = text.partition(" on ")
    return {"rule": rule, "on": [target]} if target else {"rule": rule}


def _table(console: Console, experiment: str, runs: list[Run]) -> None:
    from modelyard.cli.common import ID_STYLE, esc, fmt_metric, new_table

    narrow = console.width < 86  # the run names repeat the params: drop them rather than fold every row
    table = new_table(title=f"Experiment {esc(experiment)}: {len(runs)} runs, best first")
    if not narrow:
        table.add_column("Run", overflow="fold")
    for header in ("lr", "alpha", "accuracy", "f1"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Run ID", style=ID_STYLE, no_wrap=True, min_width=32)
    for rank, run in enumerate(runs):
        p, m = run.data.params, run.data.metrics
        cells = [] if narrow else [esc(run.info.run_name)]
        cells += [p.get("lr", ""), p.get("alpha", ""), fmt_metric(m.get("accuracy")), fmt_metric(m.get("f1"))]
        table.add_row(*cells, run.run_id, style="bold green" if rank == 0 else None)
    console.print(table)


def _hints(console: Console, experiment: str, model_name: str, best: Run, tracking_uri: str) -> None:
    from modelyard.cli.common import esc
    from modelyard.store.sql.engine import redact

    console.print("\n[bold]Where everything is[/]")
    console.print(f"  tracking store   {esc(redact(tracking_uri))}", soft_wrap=True)
    console.print(f"  best run's files {esc(best.info.artifact_uri)}", soft_wrap=True)
    console.print("\n[bold]Try next[/]")
    hints = (
        (f"modelyard runs show {best.run_id}", "params, metrics, datasets and tags of the best run"),
        (f"modelyard artifacts list {best.run_id} -r", "its confusion matrix, model and environment"),
        (
            f"modelyard models show {shlex.quote(model_name)}",
            "the released model's versions, stages and gates",
        ),
        (f"modelyard runs reproduce {best.run_id}", "the commit, command, params and data to reproduce it"),
        (
            f'modelyard runs search --experiment {shlex.quote(experiment)} --filter "metrics.accuracy > 0.9"',
            "search runs by metric",
        ),
    )
    for command, what in hints:
        console.print(f"  [cyan]{esc(command)}[/]", soft_wrap=True)
        console.print(f"      [dim]{what}[/]")
