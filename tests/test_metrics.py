import socket

import evaluate
import numpy as np
import pytest
import torch
from transformers import EvalPrediction, Trainer, TrainingArguments

from emodistill.trainers.metrics import SER_METRIC_PATH, load_ser_metric, make_compute_metrics

LABEL_NAMES = ["neutral", "angry", "sad", "happy"]


@pytest.fixture(scope="module")
def ser_metric():
    return load_ser_metric()


def test_imbalanced_example_with_never_predicted_classes(ser_metric):
    references = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3]
    predictions = [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]  # "sad" and "happy" are never predicted
    results = ser_metric.compute(predictions=predictions, references=references, label_names=LABEL_NAMES)

    assert results["confusion"] == [[5, 1, 0, 0], [1, 1, 0, 0], [2, 0, 0, 0], [1, 0, 0, 0]]
    assert results["wa"] == pytest.approx(6 / 11)
    # Recalls 5/6, 1/2, 0, 0.
    assert results["per_class_recall"] == pytest.approx({"neutral": 5 / 6, "angry": 1 / 2, "sad": 0.0, "happy": 0.0})
    assert results["ua"] == pytest.approx((5 / 6 + 1 / 2) / 4)
    assert results["ua"] != pytest.approx(results["wa"])
    # Precisions 5/9, 1/2, 0 (never predicted), 0 -> F1 2/3, 1/2, 0, 0.
    assert results["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 4)


def test_classes_absent_from_references_are_left_out_of_ua_and_macro_f1(ser_metric):
    references = [0, 0, 1, 1, 1]
    predictions = [0, 1, 1, 1, 3]  # "happy" predicted once but never true; "sad" neither
    results = ser_metric.compute(predictions=predictions, references=references, label_names=LABEL_NAMES)

    assert results["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert results["wa"] == pytest.approx(3 / 5)
    assert results["per_class_recall"] == pytest.approx({"neutral": 1 / 2, "angry": 2 / 3, "sad": None, "happy": None})
    assert results["ua"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Precisions 1/1 and 2/3 -> F1 2/3 and 2/3.
    assert results["macro_f1"] == pytest.approx(2 / 3)


def test_without_label_names_per_class_recall_is_a_list(ser_metric):
    results = ser_metric.compute(predictions=[1, 1, 0], references=[1, 0, 0])
    assert results["per_class_recall"] == [0.5, 1.0]
    assert results["confusion"] == [[1, 1], [0, 1]]

    results = ser_metric.compute(predictions=[1, 1, 0], references=[1, 0, 0], num_labels=3)
    assert results["per_class_recall"] == [0.5, 1.0, None]
    assert len(results["confusion"]) == 3


def test_perfect_predictions(ser_metric):
    results = ser_metric.compute(predictions=[3, 2, 1, 0], references=[3, 2, 1, 0], label_names=LABEL_NAMES)
    assert results["wa"] == results["ua"] == results["macro_f1"] == 1.0


def test_bad_input_is_rejected(ser_metric):
    with pytest.raises(ValueError, match=r"predictions contain class ids outside \[0, 4\): \[4\]"):
        ser_metric.compute(predictions=[4, 0], references=[0, 0], label_names=LABEL_NAMES)
    with pytest.raises(ValueError, match="num_labels=3 but 4 label_names"):
        ser_metric.compute(predictions=[0], references=[0], num_labels=3, label_names=LABEL_NAMES)


def test_loads_with_evaluate_from_the_shipped_folder_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert SER_METRIC_PATH.name == "ser_metrics" and (SER_METRIC_PATH / "ser_metrics.py").is_file()

    metric = evaluate.load(str(SER_METRIC_PATH))
    assert isinstance(metric, evaluate.Metric)
    assert metric.compute(predictions=[0, 1], references=[0, 0])["wa"] == 0.5
    assert isinstance(load_ser_metric(), evaluate.Metric)


def test_compute_metrics_takes_logits_or_a_tuple_starting_with_logits():
    compute_metrics = make_compute_metrics(LABEL_NAMES)
    logits = np.eye(4, dtype=np.float32)[[0, 0, 0, 1, 2]]  # argmax: 0, 0, 0, 1, 2
    labels = np.array([0, 0, 1, 1, 2])
    expected = {"wa": 4 / 5, "ua": (1 + 1 / 2 + 1) / 3, "macro_f1": (4 / 5 + 2 / 3 + 1) / 3}

    results = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert results == pytest.approx(expected)
    assert all(type(value) is float for value in results.values())

    hidden_states = np.zeros((5, 7), dtype=np.float32)
    assert compute_metrics(EvalPrediction(predictions=(logits, hidden_states), label_ids=labels)) == pytest.approx(
        expected
    )
    with pytest.raises(ValueError, match=r"Expected logits of shape \(examples, 4\)"):
        compute_metrics(EvalPrediction(predictions=logits[:, :3], label_ids=labels))


class _FixedLogitsModel(torch.nn.Module):
    """Returns its input features as logits, so the expected metrics are known."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # the Trainer needs a parameter to find the device

    def forward(self, features, labels=None):
        logits = features + 0 * self.unused
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def test_make_compute_metrics_in_trainer_evaluate(tmp_path):
    predicted = [0, 0, 0, 1, 2, 3]
    labels = [0, 0, 1, 1, 2, 2]
    eval_dataset = [
        {"features": torch.eye(4)[prediction], "labels": torch.tensor(label)}
        for prediction, label in zip(predicted, labels)
    ]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to=[], use_cpu=True)
    trainer = Trainer(
        model=_FixedLogitsModel(),
        args=args,
        eval_dataset=eval_dataset,
        compute_metrics=make_compute_metrics(LABEL_NAMES),
    )
    metrics = trainer.evaluate()

    assert metrics["eval_wa"] == pytest.approx(4 / 6)
    assert metrics["eval_ua"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    # Precision 2/3, 1, 1, 0 -> F1 4/5, 2/3, 2/3 over the three classes present in the labels.
    assert metrics["eval_macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 2 / 3) / 3)
