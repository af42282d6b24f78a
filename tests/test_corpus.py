"""The job's corpus: where the synthetic one is generated, and the content fingerprint that fold results are
checked against."""

import datasets
import numpy as np

from emodistill.data_scripts.corpus import content_fingerprint, prepare_corpus

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


def test_each_synthetic_corpus_size_has_its_own_cache_folder(tmp_path):
    def generated(utterances_per_speaker):
        corpus = prepare_corpus(
            None, tmp_path, synthetic_utterances_per_speaker=utterances_per_speaker, num_proc=1, egemaps=False
        )
        root = tmp_path / "synthetic_iemocap" / f"utterances_per_speaker_{utterances_per_speaker}"
        manifest = root / "IEMOCAP_full_release" / "synthetic_manifest.jsonl"
        return corpus, manifest

    corpus, manifest = generated(2)
    written = manifest.stat().st_mtime_ns
    other, other_manifest = generated(1)  # a smaller corpus, as a quick check asks for, goes beside it
    assert (len(corpus.dataset), len(other.dataset)) == (20, 10) and other_manifest.exists()
    again, _ = generated(2)
    assert manifest.stat().st_mtime_ns == written  # found again, not generated over by the smaller one
    assert again.fingerprint == corpus.fingerprint
