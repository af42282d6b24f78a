"""The job's corpus identity: the content fingerprint that fold results are checked against."""

import datasets
import numpy as np

from emodistill.data_scripts.corpus import content_fingerprint

COLUMNS = ("id", "label", "text", "input_values")


def corpus(labels=(0, 1, 2, 3, 0, 1)) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "id": [f"u{i}" for i in range(len(labels))],
            "label": list(labels),
            "text": [f"sentence {i}" for i in range(len(labels))],
            "input_values": [np.arange(i + 3, dtype=np.float32) for i in range(len(labels))],
        }
    )


def test_the_content_fingerprint_ignores_chunking_and_sees_every_change():
    whole = corpus()
    # As `map(num_proc=2)` leaves it: the same rows in two Arrow chunks, the second a slice of a larger table.
    tail = datasets.Dataset(corpus((9, 9, 9, 3, 0, 1)).data.slice(3, 3))
    chunked = datasets.concatenate_datasets([whole.select(range(3)).flatten_indices(), tail])
    assert len(chunked.data.column("input_values").chunks) == 2
    assert content_fingerprint(chunked, COLUMNS) == content_fingerprint(whole, COLUMNS)
    assert content_fingerprint(corpus((0, 1, 2, 3, 0, 2)), COLUMNS) != content_fingerprint(whole, COLUMNS)
    louder = whole.map(lambda row: {"input_values": np.asarray(row["input_values"]) * 2})
    assert content_fingerprint(louder, COLUMNS) != content_fingerprint(whole, COLUMNS)
