"""`bench/seeds.py` end to end in quick mode: trainings over two seeds, a rerun, gathers, a row compared with CE-only,
and the level probe on one of its runs. In its own file so that the test runner's workers (one file each) can run it
beside the other benchmarks' tests: it is the longest test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emodistill.trainers.results import cpu_model

BENCH = Path(__file__).resolve().parent.parent / "bench"


# Six quick trainings, a rerun, two gathers and the level probe (three calls): about 290 s alone, more when loaded.
# Rows: the full method, one setting changed, and CE-only (the ablation rows are parsed in the test above and all
# run by the ablation table in test_main_job.py).
@pytest.mark.timeout(1500)
def test_seeds(tmp_path):
    output, runs_dir = tmp_path / "seeds.json", tmp_path / "runs"
    seeds, rows = [sys.executable, str(BENCH / "seeds.py"), "--quick"], ["--rows", "none", "alpha=0.5"]
    command = [*seeds, "--threads", "1", *rows, "--output", str(output), "--runs_dir", str(runs_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "seeds" and report["quick"] is True and report["seeds"] == [0, 1]
    assert report["machine"]["cpu"] == cpu_model() and "isa_caps" in report["machine"]  # the benchmarks' record
    assert list(report["rows"]) == ["none", "alpha_0.5", "no_teachers"]
    assert report["rows"]["alpha_0.5"] == "Ours (EmoDistill), alpha = 0.5"
    for seed in (0, 1):
        for row in report["rows"]:
            run = report["runs"][f"{row}/seed_{seed}"]
            assert run["folds"] == 2 and f"--seed {seed}" in run["command"]
            stored = json.loads((runs_dir / f"seed_{seed}" / row / "results.json").read_text())
            assert run["mean"] == stored["mean"] and stored["config"]["seed"] == seed
            if row == "alpha_0.5":  # the full method with one setting changed
                assert stored["config"]["ablation"] == "none" and stored["config"]["alpha"] == 0.5
                assert run["command"].endswith("--alpha 0.5")
            elif row == "none":  # the full method: no argument
                assert stored["config"]["ablation"] == "none" and run["command"].endswith(f"--seed {seed}")
            else:
                assert stored["config"]["ablation"] == row and run["command"].endswith(f"--ablation {row}")
            assert len(run["source_digests"]) == 1
            assert run["validation_ua"] == pytest.approx(sum(f["validation_ua"] for f in stored["folds"]) / 2)
            assert run["fold_ua"] == {str(f["fold"]): f["ua"] for f in stored["folds"]}  # JSON keys are strings
            assert run["fold_validation_ua"] == {str(f["fold"]): f["validation_ua"] for f in stored["folds"]}
            assert run["torch_threads"] == [1]  # the folds' own thread count, not the summarising invocation's
            assert run["cpu_capabilities"] == [torch.backends.cpu.get_cpu_capability()]
            assert run["cpus"] == [cpu_model()]
    over = report["over_seeds"]
    difference = [p["ua"]["alpha_0.5"] - p["ua"]["no_teachers"] for p in report["per_seed"]]
    assert over["ua_difference_vs_ce_only"]["alpha_0.5"]["mean"] == pytest.approx(sum(difference) / 2)
    assert over["ua"]["alpha_0.5"]["mean"] == pytest.approx(sum(p["ua"]["alpha_0.5"] for p in report["per_seed"]) / 2)
    assert over["vs_ce_only_on_fold_ua_averaged_over_seeds"]["alpha_0.5"]["folds"] == 2
    assert "no_teachers" not in over["ua_difference_vs_ce_only"]  # the baseline is not compared with itself
    # What each part adds: the full method against each other row, on fold UA averaged over the two seeds, by hand.
    assert set(over["ours_vs_row_on_fold_ua_averaged_over_seeds"]) == {"alpha_0.5"}
    for row, comparison in over["ours_vs_row_on_fold_ua_averaged_over_seeds"].items():
        ours, other = ([report["runs"][f"{r}/seed_{s}"]["fold_ua"] for s in (0, 1)] for r in ("none", row))
        differences = [sum(o[fold] - x[fold] for o, x in zip(ours, other)) / 2 for fold in ours[0]]
        assert comparison["folds"] == 2 and comparison["wins"] == sum(d > 0 for d in differences)
        assert comparison["mean_difference"] == pytest.approx(sum(differences) / 2)
    # Each teacher alone over the seeds, from the full method's runs (its teachers are every row's of a seed), by hand.
    for name in ("linguistic", "prosodic"):
        runs = [json.loads((runs_dir / f"seed_{s}" / "none" / "results.json").read_text()) for s in (0, 1)]
        scores = [run["teachers"][name]["ua"]["mean"] for run in runs]
        assert report["teachers_alone"][name]["ua"]["mean"] == pytest.approx(sum(scores) / 2)
    # Its corpus and teacher caches are the test session's (conftest.py), never the user's ~/.cache/emodistill.
    log = (runs_dir / "seed_0_no_teachers.log").read_text()
    assert f"from {os.environ['EMODISTILL_CACHE']}/synthetic_iemocap/" in log
    table = output.with_suffix(".md").read_text()
    name = report["rows"]["alpha_0.5"]
    assert f"| {name} | 0 |" in table and f"| {name} | 1 |" in table  # a line per row and seed
    assert "What each part adds" in table and f"| {name} | " in table.split("What each part adds")[1]
    assert "| linguistic | " in table.split("Each teacher alone")[1]
    # The folder is laid out like --ablation_table's, owned by train.py: a second invocation retrains nothing.
    assert (runs_dir / ".emodistill-run").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and json.loads(output.read_text())["per_seed"] == report["per_seed"]
    for log in runs_dir.glob("seed_*.log"):  # each run's log, as the second invocation wrote it
        assert log.read_text().count("already finished with these settings: kept") == 2, log.name
    # --gather summarises the same runs without training, each training log kept beside its own.
    gathered = tmp_path / "gathered.json"
    gather = [*seeds, *rows, "--gather", "--output", str(gathered), "--runs_dir", str(runs_dir)]
    result = subprocess.run(gather, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(gathered.read_text())
    assert summary["gathered"] is True and summary["per_seed"] == report["per_seed"]
    # Gathered runs name the command that trained them (as their results.json recorded it), not the one this
    # invocation would have run.
    trained_by = json.loads((runs_dir / "seed_1" / "alpha_0.5" / "results.json").read_text())["config"]["command"]
    assert summary["runs"]["alpha_0.5/seed_1"]["command"] == trained_by and trained_by.endswith("--alpha 0.5")
    assert "Runs gathered, not trained" in gathered.with_suffix(".md").read_text()
    assert len(list(runs_dir.glob("seed_*.gather.log"))) == 6
    for log in runs_dir.glob("seed_*.log"):  # the training logs, untouched
        if not log.name.endswith(".gather.log"):
            assert log.read_text().count("already finished with these settings: kept") == 2, log.name
    # CE-only alone (`--rows` naming none), then a row of the gathered record against it by bench/compare_rows.py:
    # the gathered record's own comparison, seed by seed and over seeds.
    ce_only, compared = tmp_path / "ce_only.json", tmp_path / "compared.json"
    only = [*seeds, "--rows", "--gather", "--output", str(ce_only)]
    result = subprocess.run([*only, "--runs_dir", str(runs_dir)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(ce_only.read_text())
    assert list(record["rows"]) == ["no_teachers"] and all(p["vs_ce_only"] == {} for p in record["per_seed"])
    volatile = "wall_s_of_this_invocation"  # the summarising invocation's own time
    for run in ("no_teachers/seed_0", "no_teachers/seed_1"):
        assert record["runs"][run].keys() == summary["runs"][run].keys()
        assert {k: v for k, v in record["runs"][run].items() if k != volatile} == {
            k: v for k, v in summary["runs"][run].items() if k != volatile
        }
    assert "# CE-only over seeds 0, 1" in ce_only.with_suffix(".md").read_text()
    pair = ["--row", f"{gathered}:alpha_0.5", "--baseline", f"{ce_only}:no_teachers", "--output", str(compared)]
    result = subprocess.run([sys.executable, str(BENCH / "compare_rows.py"), *pair], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    comparison = json.loads(compared.read_text())
    for point, own in zip(comparison["per_seed"], summary["per_seed"], strict=True):
        assert point["test"] == own["vs_ce_only"]["alpha_0.5"]
        assert point["baseline_validation_ua"] == own["validation_ua"]["no_teachers"]
    averaged = summary["over_seeds"]["vs_ce_only_on_fold_ua_averaged_over_seeds"]["alpha_0.5"]
    assert comparison["over_seeds"]["test_on_fold_ua_averaged_over_seeds"] == averaged
    # The level probe on the full method's run of seed 0: its teacher and student, as recorded and at one level, and
    # the teacher trained again at one level.
    output = tmp_path / "level_invariance.json"
    probe = [sys.executable, str(BENCH / "level_invariance.py"), "--run_dir", str(runs_dir / "seed_0" / "none")]
    probe += ["--synthetic_utterances_per_speaker", "4"]
    retrain = [*probe, "--train_at_one_level", "--output", str(output)]
    # The run's teachers trained on one thread: retrained on two, they would differ by more than the level.
    result = subprocess.run([*retrain, "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "pass --threads to match" in result.stderr, result.stderr[-3000:]
    result = subprocess.run([*retrain, "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]  # it also checks the teacher against its cached predictions
    levels = json.loads(output.read_text())
    run = json.loads((runs_dir / "seed_0" / "none" / "results.json").read_text())
    assert levels["benchmark"] == "level_invariance" and len(levels["folds"]) == 2 and levels["utterances"] == 8
    # As recorded, each model scores what the run recorded (the student one utterance at a time, the run batched).
    as_recorded = levels["summary"]
    assert as_recorded["teacher, as recorded"]["ua"] == pytest.approx(run["teachers"]["prosodic"]["ua"]["mean"])
    assert as_recorded["student, as recorded"]["ua"] == pytest.approx(run["mean"]["ua"])
    # The student normalises every utterance: the level changes none of its predictions.
    assert levels["student_predictions_changed"] == 0 and levels["student_max_probability_change"] < 1e-4
    assert set(as_recorded["teacher, one level"]["per_carrier"]) == {"words", "voice", "both"}
    assert "| teacher, one level |" in output.with_suffix(".md").read_text()
    # The teacher trained at one level: the same recipe, seed and speakers as the run's, on other descriptors.
    for fold, record in zip(levels["folds"], sorted((runs_dir / "seed_0" / "none").glob("fold_*/result.json"))):
        original = json.loads(record.read_text())["teachers"]["prosodic"]["cache_entry"]
        retrained = fold["teacher trained at one level"]["cache_entry"]
        meta = [
            json.loads((Path(os.environ["EMODISTILL_CACHE"]) / e / "meta.json").read_text())
            for e in (original, retrained)
        ]
        assert retrained != original
        for key in (
            "settings",
            "seed",
            "float_path",
            "trained_on_speakers",
            "early_stopping_speakers",
            "test_speakers",
        ):
            assert meta[0][key] == meta[1][key], key
    assert "| teacher trained at one level, one level |" in output.with_suffix(".md").read_text()
    # Without the option the levelled test descriptors are extracted per fold rather than taken from the corpus-wide
    # column the retraining needs: the same descriptors, hence the same scores.
    alone = output.with_name("level_invariance_alone.json")
    result = subprocess.run(
        [*probe, "--output", str(alone), "--threads", "1"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    alone = json.loads(alone.read_text())
    assert "teacher trained at one level, one level" not in alone["summary"]
    assert alone["summary"] == {
        k: v for k, v in as_recorded.items() if not k.startswith("teacher trained at one level")
    }
    for fold, with_retraining in zip(alone["folds"], levels["folds"]):  # every fold's scores, per carrier too
        assert fold["teacher"] == with_retraining["teacher"] and fold["student"] == with_retraining["student"]
