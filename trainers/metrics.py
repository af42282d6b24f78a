"""Speech emotion recognition metrics for evaluation scripts and `transformers.Trainer`.

The metric itself is the `evaluate` module shipped in `ser_metrics/` (see `ser_metrics/ser_metrics.py` for the
definitions of WA, UA, macro-F1 and how classes absent from the references are treated); it is loaded from that local
folder, so no network access or `HF_HUB_OFFLINE` setting is needed.
"""

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

SER_METRIC_PATH = Path(__file__).resolve().parent / "ser_metrics"
# The scalars `make_compute_metrics` reports (the Trainer logs scalars only).
SCALAR_METRICS = ("wa", "ua", "macro_f1")


def load_ser_metric(**kwargs) -> evaluate.Metric:
    """The SER `evaluate` metric (WA, UA, macro-F1, per-class recall, confusion); `kwargs` go to `evaluate.load`."""
    return evaluate.load(str(SER_METRIC_PATH), **kwargs)


@functools.cache
def _shared_metric() -> evaluate.Metric:
    return load_ser_metric(keep_in_memory=True)


def ser_scores(predictions, references, num_labels: int, label_names: Sequence[str] | None = None) -> dict:
    """All SER metrics of class-id arrays in one call (fractions), through the shared in-memory metric."""
    return _shared_metric().compute(
        predictions=np.asarray(predictions).reshape(-1),
        references=np.asarray(references).reshape(-1),
        num_labels=num_labels,
        label_names=list(label_names) if label_names is not None else None,
    )


def first_output(predictions):
    """The logits of a `Trainer` prediction: `predictions` itself, or its first element when the model returned more
    (a tuple such as `(logits, embedding)`)."""
    return predictions[0] if isinstance(predictions, tuple) else predictions


def make_compute_metrics(
    label_names: Sequence[str], percent: bool = False
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a `compute_metrics` for `transformers.Trainer`: logits -> `{"wa", "ua", "macro_f1"}`, as fractions, or
    as percentages with `percent=True` (what the main job logs, like its summaries).

    `eval_pred.predictions` is the logits array of shape `(examples, num_labels)`, or a tuple whose first element is
    (models that also return e.g. hidden states); `eval_pred.label_ids` has shape `(examples,)`.
    """
    label_names = list(label_names)
    scale = 100.0 if percent else 1.0
    # In memory: the Trainer gathers predictions across processes itself, so no shared Arrow cache file is needed.
    metric = load_ser_metric(keep_in_memory=True)

    def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
        logits = np.asarray(first_output(eval_pred.predictions))
        if logits.ndim != 2 or logits.shape[-1] != len(label_names):
            raise ValueError(
                f"Expected logits of shape (examples, {len(label_names)}) for labels {label_names}, got {logits.shape}"
            )
        results = metric.compute(
            predictions=logits.argmax(axis=-1),
            references=np.asarray(eval_pred.label_ids).reshape(-1),
            label_names=label_names,
        )
        return {name: scale * results[name] for name in SCALAR_METRICS}

    return compute_metrics
