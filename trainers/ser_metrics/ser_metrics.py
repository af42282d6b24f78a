"""Speech emotion recognition metrics as an `evaluate` module: WA, UA, macro-F1, per-class recall, confusion matrix.

Load it offline with `emodistill.trainers.metrics.load_ser_metric()` (or `evaluate.load("<path to this folder>")`).
This file is imported by `evaluate` from its own module cache, so it depends on nothing from `emodistill`.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Classification metrics customary in speech emotion recognition (SER), all as fractions in [0, 1]:

- `wa` (weighted accuracy): overall accuracy, correct predictions / all predictions.
- `ua` (unweighted accuracy): mean per-class recall, i.e. balanced accuracy. It averages over the classes *present in
  the references* only: a class with no reference example has an undefined recall and is left out of the mean (it
  cannot be "missed"), so evaluating e.g. one speaker who never sounds sad is not penalised for the missing class.
- `macro_f1`: mean per-class F1 over the same classes as `ua` (those present in the references). A present class that
  is never predicted has precision 0/0, taken as 0, so its F1 is 0.
- `per_class_recall`: recall of each of the `num_labels` classes, `None` for classes absent from the references.
- `confusion`: `num_labels` x `num_labels` counts, rows = true class, columns = predicted class.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    num_labels (`int`, *optional*): number of classes; defaults to `len(label_names)` if given, else to
        `max(predictions + references) + 1`.
    label_names (`list` of `str`, *optional*): class names in id order. When given, `per_class_recall` is a dict
        keyed by name; otherwise a list indexed by class id.

Returns:
    `dict` with `wa`, `ua`, `macro_f1` (floats), `per_class_recall` (dict or list of floats / `None`) and `confusion`
    (list of lists of ints).

Examples:
    >>> ser_metrics = evaluate.load("path/to/ser_metrics")
    >>> results = ser_metrics.compute(predictions=[0, 0, 1, 1], references=[0, 0, 0, 1], label_names=["neu", "ang"])
    >>> results["wa"], results["ua"], results["per_class_recall"]
    (0.75, 0.8333333333333333, {'neu': 0.6666666666666666, 'ang': 1.0})
"""

_CITATION = """
@inproceedings{schuller2009interspeech,
  title={The INTERSPEECH 2009 emotion challenge},
  author={Schuller, Bj{\\"o}rn and Steidl, Stefan and Batliner, Anton},
  booktitle={Proc. Interspeech},
  year={2009}
}
"""


class SerMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None, label_names=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("Cannot compute SER metrics of zero examples")
        if label_names is not None:
            label_names = list(label_names)
            if num_labels is not None and num_labels != len(label_names):
                raise ValueError(f"num_labels={num_labels} but {len(label_names)} label_names: {label_names}")
            num_labels = len(label_names)
        elif num_labels is None:
            num_labels = int(max(predictions.max(), references.max())) + 1
        for name, ids in (("predictions", predictions), ("references", references)):
            out_of_range = ids[(ids < 0) | (ids >= num_labels)]
            if out_of_range.size:
                raise ValueError(
                    f"{name} contain class ids outside [0, {num_labels}): {sorted(set(out_of_range.tolist()))}"
                )

        confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        true_positives = np.diag(confusion)
        support = confusion.sum(axis=1)  # reference examples per class
        predicted = confusion.sum(axis=0)
        present = support > 0

        recall = np.divide(true_positives, support, out=np.zeros(num_labels), where=present)
        precision = np.divide(true_positives, predicted, out=np.zeros(num_labels), where=predicted > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(num_labels), where=(precision + recall) > 0
        )
        per_class_recall = [float(r) if p else None for r, p in zip(recall, present)]
        return {
            "wa": float(true_positives.sum() / support.sum()),
            "ua": float(recall[present].mean()),
            "macro_f1": float(f1[present].mean()),
            "per_class_recall": dict(zip(label_names, per_class_recall)) if label_names else per_class_recall,
            "confusion": confusion.tolist(),
        }
