"""The main job's corpus: the synthetic one (generated on first use) or a real release, read, with eGeMAPS descriptors
and decoded waveforms, and what a run must record about it (its name, a fingerprint of its content, the ground truth
of a synthetic corpus)."""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa

from .audio import decode_audio
from .egemaps import add_egemaps
from .generated_folder import SYNTHETIC_CORPORA, settings_folder
from .iemocap import IemocapReport, load_iemocap
from .synthetic_iemocap import CONFIG_FILENAME, generate_synthetic_iemocap, read_manifest

logger = logging.getLogger(__name__)

SYNTHETIC_NAME = "Synthetic IEMOCAP-layout corpus (espeak-ng)"
IEMOCAP_NAME = "IEMOCAP"
OTHER_NAME = "IEMOCAP-layout corpus (not the published release's counts)"
# The columns whose content identifies the corpus in a run's fingerprint.
FINGERPRINT_COLUMNS = ("id", "label", "speaker", "text", "input_values")


@dataclass(frozen=True)
class Corpus:
    """A prepared corpus. `dataset` has the reader's columns plus `egemaps` `(frames, 25)`, `input_values` (16 kHz
    float32) and `num_samples`; `carriers` maps utterance ids to `words`/`voice`/`both` on a synthetic corpus."""

    dataset: datasets.Dataset
    name: str
    synthetic: bool
    data_dir: str  # as the user gave it, or "generated into the cache" (no machine path in results)
    report: IemocapReport
    fingerprint: str
    carriers: dict[str, str] | None

    @property
    def label_names(self) -> list[str]:
        return self.dataset.features["label"].names


def add_waveforms(dataset: datasets.Dataset, num_proc: int | None) -> datasets.Dataset:
    """Decodes each utterance once into an `input_values` column (16 kHz float32), cached in Arrow like eGeMAPS."""

    def decode(batch):
        waveforms = [decode_audio(audio)[0] for audio in batch["audio"]]
        return {"input_values": waveforms, "num_samples": [len(w) for w in waveforms]}

    features = dataset.features.copy()
    features["input_values"] = datasets.Sequence(datasets.Value("float32"))
    features["num_samples"] = datasets.Value("int64")
    return dataset.map(
        decode,
        batched=True,
        batch_size=16,
        num_proc=num_proc,
        features=features,
        new_fingerprint=f"{dataset._fingerprint}-waveforms-v2",
        desc="Decoding audio",
    )


def content_fingerprint(dataset: datasets.Dataset, columns=FINGERPRINT_COLUMNS) -> str:
    """SHA-256 of the Arrow buffers of `columns`: the same content gives the same value wherever the corpus lies and
    however it was split into chunks (e.g. by `num_proc`); a changed label, transcript or waveform gives another."""
    digest = hashlib.sha256()
    for column in columns:
        digest.update(column.encode())
        chunks = dataset.data.column(column).chunks
        # One array with fresh buffers: chunk boundaries and slice offsets no longer show in the bytes.
        array = pa.concat_arrays(chunks) if chunks else pa.array([])
        for buffer in array.buffers():
            if buffer is not None:
                digest.update(memoryview(buffer))
    return digest.hexdigest()[:20]


def corpus_name(synthetic: bool, report: IemocapReport) -> str:
    """ "IEMOCAP" only for a corpus with the published release's counts (a copy of the synthetic corpus without its
    config, or a partial release, is not called IEMOCAP in results and model cards)."""
    if synthetic:
        return SYNTHETIC_NAME
    return IEMOCAP_NAME if report.matches_full_release else OTHER_NAME


def prepare_corpus(
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    *,
    label_set: str = "4class",
    skip_bad_audio: bool = False,
    force_reload: bool = False,
    synthetic_utterances_per_speaker: int = 45,
    num_proc: int | None = None,
    egemaps: bool = True,
    egemaps_level_dbfs: float | None = None,
) -> Corpus:
    """Loads the corpus (generating the synthetic one into `cache_dir` when `data_dir` is None) with waveforms and
    (unless `egemaps=False`: scoring a student needs none) eGeMAPS descriptors — of every utterance at
    `egemaps_level_dbfs` if given (see `add_egemaps`) — all cached in Arrow under `cache_dir`."""
    cache_dir = Path(cache_dir)
    given = data_dir
    if data_dir is None:
        settings = {"utterances_per_speaker": synthetic_utterances_per_speaker}
        data_dir = generate_synthetic_iemocap(settings_folder(cache_dir, SYNTHETIC_CORPORA, settings), **settings)
    dataset, report = load_iemocap(
        data_dir,
        label_set=label_set,
        skip_bad_audio=skip_bad_audio,
        cache_dir=cache_dir / "datasets",
        force_reload=force_reload,
        return_report=True,
    )
    if egemaps:
        dataset = add_egemaps(dataset, num_proc=num_proc, level_dbfs=egemaps_level_dbfs)
    dataset = add_waveforms(dataset, num_proc)
    synthetic = (Path(data_dir) / CONFIG_FILENAME).exists()
    carriers = {row["id"]: row["carrier"] for row in read_manifest(data_dir)} if synthetic else None
    return Corpus(
        dataset=dataset,
        name=corpus_name(synthetic, report),
        synthetic=synthetic,
        data_dir="generated into the cache" if given is None else str(given),
        report=report,
        fingerprint=content_fingerprint(dataset),
        carriers=carriers,
    )
