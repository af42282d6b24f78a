"""Speaker-independent cross-validation folds for IEMOCAP (pure functions of the `speaker` column).

Two protocols, both speaker-clean (no speaker in two splits of a fold):

- `"loso10"` (10 folds, leave one speaker out): fold k tests the k-th speaker of `SPEAKERS`, validates on the other
  speaker of the same session, trains on the remaining eight.
- `"loso5"` (5 folds, leave one session out, as reported by SUPERB/emotion2vec): fold k tests session k (both
  speakers), validates on session k % 5 + 1 (both speakers), trains on the other three. SUPERB and emotion2vec draw
  validation as a random 20% of the training sessions, which mixes speakers; here validation is a whole session.

`save_folds` / `load_folds` record a fold's exact membership (utterance ids and speakers per split) as JSON, so a run
can state, and later reproduce, what it trained and was tested on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets

SPLITS = ("train", "validation", "test")
SPEAKERS = tuple(f"Ses{session:02d}_{gender}" for session in range(1, 6) for gender in "FM")
PROTOCOLS = ("loso10", "loso5")
FOLDS_FORMAT = "emodistill-speaker-folds"
FOLDS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FoldSpec:
    """Which speakers make up each split of one fold (`fold` is 1-based)."""

    fold: int
    protocol: str
    test: tuple[str, ...]
    validation: tuple[str, ...]
    train: tuple[str, ...]

    def __post_init__(self):
        seen: dict[str, str] = {}
        for split in SPLITS:
            for speaker in getattr(self, split):
                if speaker in seen:
                    raise ValueError(
                        f"{self.protocol} fold {self.fold} is not speaker-independent: {speaker} is in both "
                        f"{seen[speaker]} and {split}"
                    )
                seen[speaker] = split

    def speakers(self, split: str) -> tuple[str, ...]:
        return getattr(self, split)


class FoldDatasetDict(datasets.DatasetDict):
    """A `DatasetDict` with `train`/`validation`/`test` that also carries the `FoldSpec` it was built from."""

    spec: FoldSpec


def _session_speakers(session: int) -> tuple[str, ...]:
    return tuple(speaker for speaker in SPEAKERS if speaker.startswith(f"Ses{session:02d}_"))


def _speaker_set(speakers_or_dataset: datasets.Dataset | Iterable[str]) -> set[str]:
    if isinstance(speakers_or_dataset, datasets.Dataset):
        if "speaker" not in speakers_or_dataset.column_names:
            raise ValueError(f"Dataset has no 'speaker' column (columns: {speakers_or_dataset.column_names})")
        return set(speakers_or_dataset.unique("speaker"))
    if isinstance(speakers_or_dataset, str):
        raise TypeError("Pass an iterable of speakers (e.g. ['Ses01_F', ...]) or a Dataset, not a single string")
    return set(speakers_or_dataset)


def fold_specs(speakers_or_dataset: datasets.Dataset | Iterable[str], protocol: str = "loso10") -> list[FoldSpec]:
    """The folds of `protocol` over IEMOCAP's ten speakers, in fold order.

    Args:
        speakers_or_dataset: the corpus's speakers (`"Ses01_F"`, ...) or a dataset with a `speaker` column. All ten
            IEMOCAP speakers must be present (a fold without its test or validation speaker would be meaningless).
        protocol: `"loso10"` or `"loso5"`.

    Raises:
        ValueError: for an unknown protocol, a missing speaker or a speaker that is not an IEMOCAP speaker.
    """
    speakers = _speaker_set(speakers_or_dataset)
    unknown = sorted(speakers - set(SPEAKERS))
    if unknown:
        raise ValueError(f"Unknown speaker(s) {unknown}; IEMOCAP speakers are {list(SPEAKERS)}")
    missing = [speaker for speaker in SPEAKERS if speaker not in speakers]
    if missing:
        raise ValueError(
            f"The corpus has no utterance of speaker(s) {missing}, so the {protocol} folds cannot be built "
            "(was the corpus filtered, or were that speaker's files skipped as bad audio?)"
        )
    if protocol == "loso10":
        specs = []
        for index, test_speaker in enumerate(SPEAKERS):
            partner = SPEAKERS[index ^ 1]  # the other speaker of the same session
            train = tuple(s for s in SPEAKERS if s not in (test_speaker, partner))
            specs.append(FoldSpec(index + 1, protocol, test=(test_speaker,), validation=(partner,), train=train))
        return specs
    if protocol == "loso5":
        specs = []
        for session in range(1, 6):
            test, validation = _session_speakers(session), _session_speakers(session % 5 + 1)
            train = tuple(s for s in SPEAKERS if s not in test + validation)
            specs.append(FoldSpec(session, protocol, test=test, validation=validation, train=train))
        return specs
    raise ValueError(f"Unknown fold protocol {protocol!r}; choose one of {list(PROTOCOLS)}")


def _select_folds(specs: list[FoldSpec], folds: Sequence[int] | None) -> list[FoldSpec]:
    if folds is None:
        return specs
    by_number = {spec.fold: spec for spec in specs}
    invalid = [fold for fold in folds if fold not in by_number]
    if invalid:
        raise ValueError(f"Fold number(s) {invalid} out of range: {specs[0].protocol} has folds 1..{len(specs)}")
    return [by_number[fold] for fold in folds]


def _build_fold(dataset: datasets.Dataset, spec: FoldSpec, speaker_column: list[str]) -> FoldDatasetDict:
    split_of = {speaker: split for split in SPLITS for speaker in spec.speakers(split)}
    indices: dict[str, list[int]] = {split: [] for split in SPLITS}
    for row, speaker in enumerate(speaker_column):
        if speaker not in split_of:
            raise ValueError(
                f"Row {row} has speaker {speaker!r}, which no split of {spec.protocol} fold {spec.fold} holds"
            )
        indices[split_of[speaker]].append(row)
    if sum(len(rows) for rows in indices.values()) != len(dataset):  # every row in exactly one split
        raise AssertionError(f"{spec.protocol} fold {spec.fold}: splits do not partition the {len(dataset)} rows")
    fold = FoldDatasetDict({split: dataset.select(indices[split]) for split in SPLITS})
    fold.spec = spec
    return fold


def speaker_folds(
    dataset: datasets.Dataset, protocol: str = "loso10", folds: Sequence[int] | None = None
) -> list[FoldDatasetDict]:
    """Split `dataset` into speaker-independent folds.

    Args:
        dataset: an IEMOCAP dataset with a `speaker` column (see `load_iemocap`).
        protocol: `"loso10"` or `"loso5"` (see the module docstring).
        folds: 1-based fold numbers to build (default: all), e.g. `[1, 3]`.

    Returns:
        One `FoldDatasetDict` (`train`/`validation`/`test`, plus `.spec`) per requested fold, in the order requested.
        Every row of `dataset` is in exactly one split of each fold.
    """
    specs = _select_folds(fold_specs(dataset, protocol), folds)
    speaker_column = list(dataset["speaker"])
    return [_build_fold(dataset, spec, speaker_column) for spec in specs]


def save_folds(folds_or_specs: Sequence[FoldDatasetDict | FoldSpec], path: str | os.PathLike) -> None:
    """Write the folds' membership to JSON: per fold and split, the speakers and (for built folds) the utterance ids.

    `FoldSpec`s alone record speakers only (`"ids": null`).
    """
    records = []
    for item in folds_or_specs:
        spec = item.spec if isinstance(item, datasets.DatasetDict) else item
        if not isinstance(spec, FoldSpec):
            raise TypeError(f"Expected FoldDatasetDict or FoldSpec, got {type(item).__name__}")
        record = {"fold": spec.fold, "protocol": spec.protocol}
        for split in SPLITS:
            ids = list(item[split]["id"]) if isinstance(item, datasets.DatasetDict) else None
            record[split] = {"speakers": list(spec.speakers(split)), "ids": ids}
        records.append(record)
    document = {"format": FOLDS_FORMAT, "version": FOLDS_FORMAT_VERSION, "folds": records}
    Path(path).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def load_folds(
    path: str | os.PathLike, dataset: datasets.Dataset | None = None
) -> list[FoldSpec] | list[FoldDatasetDict]:
    """Read folds written by `save_folds`.

    Without `dataset`, returns the `FoldSpec`s. With `dataset`, rebuilds each fold from exactly the recorded
    utterance ids (not from the protocol, so a changed corpus cannot silently change a fold) after checking that
    every id is in `dataset` and belongs to one of its split's recorded speakers; rows of `dataset` that the file
    does not mention are left out.

    Raises:
        ValueError: for a file that is not a folds file, or a recorded id missing from `dataset` / with another speaker.
    """
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("format") != FOLDS_FORMAT:
        raise ValueError(f"{path} is not a folds file written by save_folds (no format {FOLDS_FORMAT!r})")
    if document.get("version") != FOLDS_FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported folds file version {document.get('version')} (expected {FOLDS_FORMAT_VERSION})"
        )
    specs = [
        FoldSpec(
            fold=record["fold"],
            protocol=record["protocol"],
            **{split: tuple(record[split]["speakers"]) for split in SPLITS},
        )
        for record in document["folds"]
    ]
    if dataset is None:
        return specs
    row_of = {utterance_id: row for row, utterance_id in enumerate(dataset["id"])}
    speaker_column = list(dataset["speaker"])
    built = []
    for spec, record in zip(specs, document["folds"]):
        splits = {}
        for split in SPLITS:
            ids = record[split]["ids"]
            if ids is None:
                raise ValueError(f"{path}: fold {spec.fold} records speakers only (saved from FoldSpecs), not ids")
            missing = [utterance_id for utterance_id in ids if utterance_id not in row_of]
            if missing:
                raise ValueError(
                    f"{path}: fold {spec.fold} {split} lists {len(missing)} id(s) absent from the dataset, "
                    f"e.g. {missing[:5]}"
                )
            rows = [row_of[utterance_id] for utterance_id in ids]
            strangers = sorted({speaker_column[row] for row in rows} - set(spec.speakers(split)))
            if strangers:
                raise ValueError(
                    f"{path}: fold {spec.fold} {split} ids belong to speaker(s) {strangers} in this dataset, "
                    f"but the file records speakers {list(spec.speakers(split))}"
                )
            splits[split] = dataset.select(rows)
        fold = FoldDatasetDict(splits)
        fold.spec = spec
        built.append(fold)
    return built
