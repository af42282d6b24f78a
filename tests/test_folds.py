"""Tests of the speaker-independent IEMOCAP folds (metadata-only datasets, plus one end-to-end run)."""

import json

import datasets
import pytest

from emodistill.data_scripts.folds import (
    SPEAKERS,
    FoldSpec,
    fold_specs,
    load_folds,
    save_folds,
    speaker_folds,
)
from emodistill.data_scripts.iemocap import load_iemocap


def metadata_dataset(rows_per_speaker: int = 3, speakers=SPEAKERS) -> datasets.Dataset:
    ids, speaker_column = [], []
    for speaker in speakers:
        session, gender = speaker[3:5], speaker[-1]
        for turn in range(rows_per_speaker):
            ids.append(f"Ses{session}F_impro01_{gender}{turn:03d}")
            speaker_column.append(speaker)
    return datasets.Dataset.from_dict({"id": ids, "speaker": speaker_column})


def assert_partition(fold, dataset):
    """Speakers disjoint across splits, and every row of `dataset` in exactly one split."""
    split_speakers = {split: set(fold[split]["speaker"]) for split in ("train", "validation", "test")}
    assert not split_speakers["train"] & split_speakers["validation"]
    assert not split_speakers["train"] & split_speakers["test"]
    assert not split_speakers["validation"] & split_speakers["test"]
    all_ids = [*fold["train"]["id"], *fold["validation"]["id"], *fold["test"]["id"]]
    assert sorted(all_ids) == sorted(dataset["id"])


def test_loso10_tests_each_speaker_and_validates_on_the_session_partner():
    specs = fold_specs(SPEAKERS, "loso10")
    assert [spec.fold for spec in specs] == list(range(1, 11))
    for spec, speaker in zip(specs, SPEAKERS):
        assert spec.test == (speaker,)
        (partner,) = spec.validation
        assert partner != speaker and partner[:5] == speaker[:5]  # same session
        assert len(spec.train) == 8 and set(spec.train) | {speaker, partner} == set(SPEAKERS)
    assert specs[0].validation == ("Ses01_M",) and specs[1].validation == ("Ses01_F",)
    assert specs[9].test == ("Ses05_M",) and specs[9].validation == ("Ses05_F",)


def test_loso5_tests_a_session_and_validates_on_the_next():
    specs = fold_specs(SPEAKERS, "loso5")
    assert [spec.fold for spec in specs] == [1, 2, 3, 4, 5]
    for spec in specs:
        next_session = spec.fold % 5 + 1
        assert spec.test == (f"Ses{spec.fold:02d}_F", f"Ses{spec.fold:02d}_M")
        assert spec.validation == (f"Ses{next_session:02d}_F", f"Ses{next_session:02d}_M")
        assert len(spec.train) == 6 and not set(spec.train) & set(spec.test + spec.validation)
    assert specs[4].validation == ("Ses01_F", "Ses01_M")


@pytest.mark.parametrize("protocol, num_folds", [("loso10", 10), ("loso5", 5)])
def test_speaker_folds_partition_every_fold(protocol, num_folds):
    dataset = metadata_dataset()
    folds = speaker_folds(dataset, protocol)
    assert len(folds) == num_folds
    for fold in folds:
        assert_partition(fold, dataset)
        assert set(fold["test"]["speaker"]) == set(fold.spec.test)
        assert set(fold["validation"]["speaker"]) == set(fold.spec.validation)


def test_speaker_folds_subset():
    folds = speaker_folds(metadata_dataset(), "loso10", folds=[1, 3])
    assert [fold.spec.fold for fold in folds] == [1, 3]
    assert set(folds[1]["test"]["speaker"]) == {"Ses02_F"} and set(folds[1]["validation"]["speaker"]) == {"Ses02_M"}
    with pytest.raises(ValueError, match=r"\[6\] out of range: loso5 has folds 1..5"):
        speaker_folds(metadata_dataset(), "loso5", folds=[2, 6])


def test_missing_unknown_speakers_and_protocol_are_clear_errors():
    without_ses03_m = [speaker for speaker in SPEAKERS if speaker != "Ses03_M"]
    with pytest.raises(ValueError, match=r"no utterance of speaker\(s\) \['Ses03_M'\]"):
        speaker_folds(metadata_dataset(speakers=without_ses03_m))
    with pytest.raises(ValueError, match=r"Unknown speaker\(s\) \['Ses06_F'\]"):
        fold_specs([*SPEAKERS, "Ses06_F"])
    with pytest.raises(ValueError, match="Unknown fold protocol 'random'"):
        fold_specs(SPEAKERS, "random")
    with pytest.raises(ValueError, match="Ses01_F is in both train and test"):
        FoldSpec(1, "custom", test=("Ses01_F",), validation=("Ses01_M",), train=("Ses01_F", "Ses02_F"))


def test_json_round_trip_rebuilds_the_same_folds(tmp_path):
    dataset = metadata_dataset()
    folds = speaker_folds(dataset, "loso5", folds=[2, 5])
    path = tmp_path / "folds.json"
    save_folds(folds, path)
    document = json.loads(path.read_text())
    assert document["folds"][0]["test"]["speakers"] == ["Ses02_F", "Ses02_M"]
    assert document["folds"][0]["test"]["ids"] == folds[0]["test"]["id"]
    assert load_folds(path) == [fold.spec for fold in folds]
    reloaded = load_folds(path, dataset.shuffle(seed=0))  # rows are found by id, not by position
    for original, again in zip(folds, reloaded):
        assert again.spec == original.spec
        for split in ("train", "validation", "test"):
            assert again[split]["id"] == original[split]["id"]


def test_load_folds_verifies_against_the_dataset(tmp_path):
    dataset = metadata_dataset()
    path = tmp_path / "folds.json"
    save_folds(speaker_folds(dataset, "loso10", folds=[1]), path)
    with pytest.raises(ValueError, match=r"fold 1 test lists 1 id\(s\) absent from the dataset"):
        load_folds(path, dataset.filter(lambda row: row["id"] != "Ses01F_impro01_F002"))
    relabelled = dataset.map(lambda row: {"speaker": "Ses02_F" if row["speaker"] == "Ses01_F" else row["speaker"]})
    with pytest.raises(ValueError, match=r"belong to speaker\(s\) \['Ses02_F'\]"):
        load_folds(path, relabelled)
    specs_only = tmp_path / "specs.json"
    save_folds(fold_specs(dataset, "loso10"), specs_only)
    assert load_folds(specs_only) == fold_specs(SPEAKERS, "loso10")
    with pytest.raises(ValueError, match="records speakers only"):
        load_folds(specs_only, dataset)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a folds file"):
        load_folds(tmp_path / "other.json")


def test_end_to_end_on_the_synthetic_corpus(tiny_iemocap_root, tmp_path):
    dataset, report = load_iemocap(tiny_iemocap_root, cache_dir=tmp_path / "cache", return_report=True)
    assert len(dataset) == report.kept > 0 and report.kept + sum(report.dropped.values()) == report.total
    assert set(dataset["speaker"]) == set(SPEAKERS)
    for protocol, num_folds in (("loso10", 10), ("loso5", 5)):
        folds = speaker_folds(dataset, protocol)
        assert len(folds) == num_folds
        for fold in folds:
            assert_partition(fold, dataset)
    save_folds(folds, tmp_path / "folds.json")
    assert [fold["test"]["id"] for fold in load_folds(tmp_path / "folds.json", dataset)] == [
        fold["test"]["id"] for fold in folds
    ]
