"""Runs a researcher can trust: no silent reuse of other settings' folds, no destructive flags, damaged state redone,
honest corpus names, clean redirected output, fold-parallel jobs gathered without retraining."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emodistill.data_scripts.corpus import OTHER_NAME, SYNTHETIC_NAME, prepare_corpus
from emodistill.data_scripts.synthetic_iemocap import CONFIG_FILENAME
from emodistill.trainers import results as results_module
from emodistill.trainers.results import RUN_MARKER

from tiny_models import TINY_JOB_ARGS

REPO = Path(__file__).resolve().parent.parent
TINY_RUN = [*TINY_JOB_ARGS, "--per_device_train_batch_size", "8"]


def train(cache: Path, output: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python train.py ...` as a user runs it, output redirected (not a terminal)."""
    command = [sys.executable, str(REPO / "train.py"), "--cache_dir", str(cache), "--output_dir", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *TINY_RUN, *extra], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    result = train(root / "cache", root / "out", "--folds", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, result


def test_redirected_output_is_one_line_per_phase_without_bars_or_repeated_warnings(run):
    _, result = run
    output = result.stdout + result.stderr
    assert "Fold 1/1: loso10 fold 1, test speaker(s) Ses01_F" in output
    assert "\r" not in output and "it/s]" not in output and "\x1b[" not in output
    assert "pin_memory" not in output and "Writing model shards" not in output and "MISSING" not in output
    assert "validation UA" in output and "1 fold(s) in" in output and "±" not in output.split("1 fold(s) in")[1]


def test_the_card_and_results_name_the_folds_that_ran_and_no_machine_path(run):
    root, _ = run
    card = (root / "out" / "README.md").read_text()
    results = json.loads((root / "out" / "results.json").read_text())
    assert "fold 1 of 10 folds" in card and "±" not in card
    assert "one fold" in card
    # The command is the user's own (it names the folders they chose); nothing else may name a path of this machine.
    command = results["config"].pop("command")
    assert all(fold["config"].pop("command") == command for fold in results["folds"])
    for text in (card.replace(command, ""), json.dumps(results)):
        assert "site-packages" not in text and str(root) not in text
    assert "all-MiniLM-L6-v2" in card
    assert results["config"]["data_dir"] == "generated into the cache"


def test_per_utterance_predictions_match_the_fold_scores(run):
    root, _ = run
    fold = root / "out" / "fold_01"
    record = json.loads((fold / "result.json").read_text())
    with open(fold / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == record["n"] == 4 and {r["id"][:5] for r in rows} == {"Ses01"}
    names = record["label_names"]
    confusion = np.zeros((len(names), len(names)), dtype=int)
    for row in rows:
        probabilities = np.array([float(row[f"p_{name}"]) for name in names])
        assert probabilities.sum() == pytest.approx(1, abs=1e-4)
        assert row["prediction"] == names[int(probabilities.argmax())]
        confusion[names.index(row["label"]), names.index(row["prediction"])] += 1
    assert confusion.tolist() == record["confusion"]
    assert sum(v["n"] for v in record["per_carrier"].values()) == 4  # synthetic corpus: every utterance's carrier


def test_a_rerun_with_other_settings_stops_naming_them(run):
    root, _ = run
    before = (root / "out" / "fold_01" / "result.json").read_text()
    result = train(root / "cache", root / "out", "--folds", "1", "--ablation", "no_teachers", "--learning_rate", "0.5")
    assert result.returncode != 0
    assert "was produced with other settings" in result.stderr
    assert (
        "training.learning_rate: 0.0003 -> 0.5" in result.stderr
        and "training.ablation: none -> no_teachers" in result.stderr
    )
    assert (root / "out" / "fold_01" / "result.json").read_text() == before


def test_another_corpus_is_refused_and_a_copy_without_its_config_is_not_called_iemocap(
    run, tiny_iemocap_root, tmp_path
):
    root, _ = run
    copy = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(tiny_iemocap_root, copy)
    (copy / CONFIG_FILENAME).unlink()
    corpus = prepare_corpus(copy, tmp_path / "cache", num_proc=1, egemaps=False)
    assert corpus.name == OTHER_NAME and corpus.name != "IEMOCAP" and not corpus.synthetic
    result = train(root / "cache", root / "out", "--folds", "1", "--data_dir", str(copy))
    assert result.returncode != 0 and "data.corpus: " + SYNTHETIC_NAME + " -> " + OTHER_NAME in result.stderr


def test_overwrite_deletes_nothing_it_did_not_create_and_checks_everything_first(run, tmp_path):
    root, _ = run
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    missing = train(root / "cache", thesis, "--overwrite_output_dir", "--data_dir", str(tmp_path / "no_such_corpus"))
    assert missing.returncode != 0 and "no_such_corpus" in missing.stderr
    refused = train(root / "cache", thesis, "--folds", "1", "--overwrite_output_dir")
    assert refused.returncode != 0 and "was not created by train.py" in refused.stderr
    assert (thesis / "chapter1.tex").read_text() == "years of work"


def test_damaged_results_and_teacher_caches_are_redone_with_a_warning(run, tmp_path):
    root, _ = run
    output = tmp_path / "out"
    shutil.copytree(root / "out", output)
    (output / "fold_01" / "result.json").write_text('{"fold": 1, "wa": ')  # as if the disk filled up mid-write
    [cache_file] = (root / "cache" / "teachers" / "prosodic").glob("*/outputs.safetensors")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    result = train(root / "cache", output, "--folds", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f"Fold result {output / 'fold_01' / 'result.json'} is damaged" in log
    assert f"The prosodic teacher cache in {cache_file.parent} is damaged" in log
    assert json.loads((output / "fold_01" / "result.json").read_text())["fold"] == 1


def test_repeated_folds_are_refused(run):
    root, _ = run
    result = train(root / "cache", root / "out", "--folds", "1,1")
    assert result.returncode != 0 and "names [1] more than once" in result.stderr


def test_fold_parallel_jobs_are_gathered_and_other_settings_refused(run, tmp_path):
    root, _ = run
    shared = tmp_path / "shared"
    shutil.copytree(root / "out", shared)  # fold 1, as if from job 1 of an array
    assert train(root / "cache", shared, "--folds", "2").returncode == 0  # job 2
    (shared / "results.json").unlink()
    gathered = train(root / "cache", shared, "--gather")
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    results = json.loads((shared / "results.json").read_text())
    assert results["fold_numbers"] == [1, 2] and "folds 1, 2 of 10 folds" in (shared / "README.md").read_text()
    assert (shared / RUN_MARKER).exists()
    assert train(root / "cache", shared, "--folds", "3", "--learning_rate", "0.001").returncode == 0
    refused = train(root / "cache", shared, "--gather")
    assert refused.returncode != 0 and "training.learning_rate: 0.0003 -> 0.001" in refused.stderr


def test_the_commit_and_code_are_read_once_per_process(monkeypatch):
    """A commit made while a job runs is not the code the job runs: results name the one read at the start."""
    results_module.git_commit.cache_clear()
    first, digest = results_module.git_commit(), results_module.source_digest()

    def git_again(*args, **kwargs):
        raise AssertionError("git was asked again")

    monkeypatch.setattr(results_module.subprocess, "run", git_again)
    assert results_module.git_commit() == first and results_module.source_digest() == digest
