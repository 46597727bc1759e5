"""The quickstart pipeline: load data → validate → split → train several configurations in parallel →
pick the best → register it → promote it to Production through a gate.

Run it with `modelyard quickstart` (which adds a summary), or as any pipeline:

    modelyard pipelines run modelyard.examples.quickstart:quickstart --param experiment=quickstart

Each training step is a tracked run with its parameters, datasets, per-epoch loss and accuracy, final
accuracy and F1, a confusion-matrix figure and the model. Run it twice: the second run takes every step from
the cache. scikit-learn's bundled digits dataset (8x8 images of handwritten digits) is used, so nothing is
downloaded.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import modelyard as my
from modelyard.pipelines import Dataset

EPOCHS = 15
# Learning rate and L2 penalty of an SGD logistic regression: a too-small, a good, a too-large step, and a good
# step with heavy regularisation.
SETTINGS: list[dict[str, float]] = [
    {"lr": 0.001, "alpha": 0.0001},
    {"lr": 0.01, "alpha": 0.0001},
    {"lr": 0.1, "alpha": 0.0001},
    {"lr": 0.01, "alpha": 0.05},
]
DATA_SOURCE = "sklearn.datasets.load_digits"
# The release gate: a version reaches Production only above this accuracy, and takes the champion alias only if
# it is at least as good as the current champion.
GATES = ("metrics.accuracy >= 0.9", "metrics.accuracy >= champion on @champion")
MIN_ROWS_PER_CLASS = 100


@my.step
def load_data() -> Dataset:
    """The digits dataset: 64 pixel columns and the `target` digit."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    return frame


@my.step
def validate(data: Dataset) -> Dataset:
    """Refuse data a model should not be trained on: missing values, pixels out of range, rare classes."""
    pixels = data.drop(columns="target")
    problems = []
    if data.isna().any().any():
        problems.append(f"{int(data.isna().sum().sum())} missing values")
    if pixels.min().min() < 0 or pixels.max().max() > 16:
        problems.append("pixel values outside 0..16")
    counts = data["target"].value_counts()
    rare = counts[counts < MIN_ROWS_PER_CLASS]
    if len(rare):
        problems.append(f"classes with fewer than {MIN_ROWS_PER_CLASS} rows: {sorted(rare.index.tolist())}")
    if problems:
        raise ValueError("The data failed validation: " + "; ".join(problems))
    print(f"validated {len(data)} rows, {pixels.shape[1]} features, {len(counts)} classes")
    return data


class Split(NamedTuple):
    train: Dataset
    validation: Dataset


@my.step
def split(data: Dataset, validation_fraction: float = 0.25) -> Split:
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(
        data, test_size=validation_fraction, random_state=0, stratify=data["target"]
    )
    return Split(train, val)


class Trained(NamedTuple):
    accuracy: float
    model_uri: str


@my.step
def train(train: Dataset, validation: Dataset, setting: dict, plot: bool = True) -> Trained:
    """`EPOCHS` passes of SGD, logged per epoch, then final metrics, a confusion matrix and the model."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    run = my.active_run()
    assert run is not None  # each step runs inside its own tracked run
    my.log_params({"model": "SGDClassifier", "loss": "log_loss", "epochs": EPOCHS, **setting})
    my.set_tag("quickstart", "true")
    my.log_dataset(train, name="digits-train", context="training", source=DATA_SOURCE)
    my.log_dataset(validation, name="digits-val", context="validation", source=DATA_SOURCE)

    X_train, y_train = train.drop(columns="target").to_numpy(float), train["target"].to_numpy()
    X_val, y_val = validation.drop(columns="target").to_numpy(float), validation["target"].to_numpy()
    classes = sorted(set(y_train.tolist()))
    scaler = StandardScaler().fit(X_train)
    X_train_s, X_val_s = scaler.transform(X_train), scaler.transform(X_val)
    clf = SGDClassifier(
        loss="log_loss", learning_rate="constant", eta0=setting["lr"], alpha=setting["alpha"], random_state=0
    )
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a too-large learning rate is part of the demonstration
        for epoch in range(1, EPOCHS + 1):
            order = rng.permutation(len(X_train_s))
            clf.partial_fit(X_train_s[order], y_train[order], classes=classes)
            my.log_metric(
                "train_loss", log_loss(y_train, clf.predict_proba(X_train_s), labels=classes), step=epoch
            )
            my.log_metric("val_accuracy", accuracy_score(y_val, clf.predict(X_val_s)), step=epoch)

    predicted = clf.predict(X_val_s)
    accuracy = float(accuracy_score(y_val, predicted))
    my.log_metrics({"accuracy": accuracy, "f1": float(f1_score(y_val, predicted, average="macro"))})
    if plot:
        matrix = confusion_matrix(y_val, predicted, labels=classes)
        my.log_figure(confusion_figure(matrix, classes, run.info.run_name), "confusion_matrix.png")
    model = Pipeline([("scale", scaler), ("classify", clf)])
    my.log_model(model, "model", input_example=X_val[:5], serialization="skops")  # safe to load anywhere
    print(f"setting {setting}: accuracy {accuracy:.3f}")
    return Trained(accuracy, f"runs:/{run.run_id}/model")


def confusion_figure(matrix: Any, labels: Any, title: str) -> Any:
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
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            count = int(matrix[row, col])
            color = "white" if count > threshold else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color=color)
    return fig


class Best(NamedTuple):
    model_uri: str
    accuracy: float


@my.step
def pick_best(accuracies: list[float], model_uris: list[str]) -> Best:
    best = max(range(len(accuracies)), key=lambda i: accuracies[i])
    print(f"best of {len(accuracies)}: {model_uris[best]} with accuracy {accuracies[best]:.3f}")
    return Best(model_uris[best], accuracies[best])


@my.step
def register(model_uri: str, model_name: str) -> int:
    """A new version of `model_name`, with the release gates set on the model."""
    version = my.register_model(model_uri, model_name).version
    my.RegistryClient().set_gates(model_name, [_gate(rule) for rule in GATES])
    return int(version)


@my.step
def promote(model_name: str, version: int) -> str:
    """Production through the gates, and the champion alias: the gates refuse a worse model."""
    registry = my.RegistryClient()
    registry.transition_stage(
        model_name, version, "Production", archive_existing=True, comment="best quickstart run"
    )
    registry.set_alias(model_name, "champion", version)
    return f"models:/{model_name}@champion"


def _gate(text: str) -> dict[str, object]:
    rule, _, target = text.partition(" on ")
    return {"rule": rule, "on": [target]} if target else {"rule": rule}


@my.pipeline
def quickstart(
    model_name: str = "quickstart-digits",
    settings: list = SETTINGS,
    plot: bool = True,
):
    data = validate(load_data())
    parts = split(data)
    with my.parallel_for(settings) as setting:
        trained = train(parts.outputs.train, parts.outputs.validation, setting, plot)
    best = pick_best(my.collect(trained.outputs.accuracy), my.collect(trained.outputs.model_uri))
    with my.condition(best.outputs.accuracy >= 0.9):
        version = register(best.outputs.model_uri, model_name)
        promote(model_name, version)
