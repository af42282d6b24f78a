"""Each benchmark runs with `--quick` and writes the documented JSON (values are timings: only their form is checked)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emodistill.trainers.results import cpu_model

BENCH = Path(__file__).resolve().parent.parent / "bench"
MACHINE_KEYS = {
    "cpu_count",
    "torch_threads",
    "cpu_capability",
    "torch_version",
    "date",
    "command",
    "load_average_at_start",
}


def run_quick(script: str, tmp_path: Path) -> dict:
    output = tmp_path / f"{script}.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--quick", "--threads", "1", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout
    report = json.loads(output.read_text())
    assert report["benchmark"] == script and report["quick"] is True
    assert MACHINE_KEYS <= report["machine"].keys()
    assert "--quick" in report["machine"]["command"] and report["machine"]["torch_threads"] == 1
    return report


def assert_ratio(summary: dict, repetitions: int):
    assert summary["median_ratio"] > 0 and summary["ratio_of_medians"] > 0
    assert len(summary["per_repetition_ratios"]) == repetitions


def test_kd_overhead(tmp_path):
    report = run_quick("kd_overhead", tmp_path)
    (setting,) = report["settings"]
    assert setting["setting"] == "default_student"
    assert set(setting["sides"]) == {"ce_plain_trainer", "kd_cached", "kd_online"}
    for key in ("kd_over_ce_ratio_cached", "kd_over_ce_ratio_online"):
        assert_ratio(setting[key], report["repetitions"])
        assert report[key] == pytest.approx(setting[key]["median_ratio"])


def test_inference(tmp_path):
    report = run_quick("inference", tmp_path)
    (setting,) = report["settings"]
    assert {"raw_bs1", "pipeline_bs1", "raw_bs8", "pipeline_bs8", "cascade_bs1"} == set(setting["sides"])
    for summary in setting["pipeline_over_raw_throughput"].values():
        assert_ratio(summary, report["repetitions"])
    assert_ratio(setting["cascade_over_student_speedup"], report["repetitions"])
    assert setting["real_time_factor_bs1"] > 0 and "ASR" in report["cascade_note"]


def test_features(tmp_path):
    report = run_quick("features", tmp_path)
    assert report["utterances"] == 20 and report["audio_seconds"] > 0
    assert_ratio(report["parallel_speedup"], report["repetitions"])
    assert_ratio(report["cached_over_first_run"], report["repetitions"])
    # A cache hit skips decoding and openSMILE: even on a noisy machine it is far cheaper than extraction.
    assert report["cached_over_first_run"]["median_ratio"] < 0.5


def test_layer_probe(tmp_path):
    report = run_quick("layer_probe", tmp_path)
    student_layers = [f"layer {i}" for i in range(5)]  # the bundled student: 4 transformer layers and layer 0
    assert list(report["probes"]) == [*student_layers, "egemaps_functionals"] and report["folds"] == 2
    for result in report["probes"].values():
        assert len(result["fold_ua"]) == 2 and result["ua"] == pytest.approx(sum(result["fold_ua"]) / 2)
        assert set(result["per_carrier"]) == {"words", "voice", "both"}
    table = (tmp_path / "layer_probe.md").read_text()
    assert "| layer 4 |" in table and "| egemaps_functionals |" in table


def test_the_probe_regression_separates_what_is_separable():
    sys.path.insert(0, str(BENCH))
    try:
        from layer_probe import fit_and_predict
    finally:
        sys.path.remove(str(BENCH))
    generator = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])  # three well-separated classes
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + generator.normal(0, 0.5, (60, 2))
    test = np.array([[3.5, 0.2], [-4.2, -0.1], [0.3, 3.8]])
    assert fit_and_predict(features, labels, test, num_labels=3, l2=1e-3).tolist() == [0, 1, 2]


def seeds_record(path: Path, row: str, name: str, fold_ua: dict[int, dict[int, float]]) -> str:
    """A record of `bench/seeds.py`'s form holding one row: seed -> fold -> test UA (validation UA 1 point less)."""
    runs = {
        f"{row}/seed_{seed}": {
            "fold_ua": {str(f): ua for f, ua in folds.items()},
            "fold_validation_ua": {str(f): ua - 1 for f, ua in folds.items()},
            "mean": {"ua": sum(folds.values()) / len(folds)},
            "validation_ua": sum(folds.values()) / len(folds) - 1,
        }
        for seed, folds in fold_ua.items()
    }
    path.write_text(json.dumps({"benchmark": "seeds", "seeds": list(fold_ua), "rows": {row: name}, "runs": runs}))
    return f"{path}:{row}"


def test_compare_rows_pairs_folds_by_seed_across_records(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        from compare_rows import main
    finally:
        sys.path.remove(str(BENCH))
    row = seeds_record(tmp_path / "a.json", "none", "Ours", {0: {1: 80, 2: 70, 3: 60}, 1: {1: 82, 2: 72, 3: 66}})
    # The baseline's seeds from two records (as when one seed was measured on another day).
    seed_0 = seeds_record(tmp_path / "b0.json", "no_teachers", "CE-only", {0: {1: 75, 2: 71, 3: 49}})
    seed_1 = seeds_record(tmp_path / "b1.json", "no_teachers", "CE-only", {1: {1: 79, 2: 70, 3: 60}})
    output = tmp_path / "compare.json"
    main(
        ["--row", row, "--baseline", seed_0, seed_1, "--baseline_name", "CE-only, all layers", "--output", str(output)]
    )
    report = json.loads(output.read_text())
    assert report["names"] == {"row": "Ours", "baseline": "CE-only, all layers"} and report["seeds"] == [0, 1]
    assert "--baseline_name 'CE-only, all layers'" in report["command"]  # as a shell takes it
    first, second = report["per_seed"]
    # Seed 0: differences +5, -1, +11; seed 1: +3, +2, +6.
    assert (first["row_ua"], first["baseline_ua"]) == (70, 65) and first["test"]["wins"] == 2
    assert first["test"]["mean_difference"] == pytest.approx(5)
    assert second["test"]["wins"] == 3 and second["test"]["wilcoxon_p"] == pytest.approx(0.25)  # 2 x (1/2)^3
    over = report["over_seeds"]
    assert over["ua_difference"]["mean"] == pytest.approx((5 + 11 / 3) / 2)
    # Fold UA averaged over seeds: differences +4, +0.5, +8.5; all three better: p = 0.25 again, by hand.
    averaged = over["test_on_fold_ua_averaged_over_seeds"]
    assert averaged["wins"] == 3 and averaged["mean_difference"] == pytest.approx(13 / 3)
    assert averaged["wilcoxon_p"] == pytest.approx(0.25)
    assert over["validation_on_fold_ua_averaged_over_seeds"]["mean_difference"] == pytest.approx(13 / 3)
    assert report["runs"]["baseline"]["1"]["record"] == str(tmp_path / "b1.json")
    assert "| 0 | 70.00 | 65.00 | +5.00 | 2/3 |" in output.with_suffix(".md").read_text()
    # One seed of both sides, chosen.
    main(["--row", row, "--baseline", seed_0, "--seeds", "0", "--output", str(output)])
    assert json.loads(output.read_text())["seeds"] == [0]
    old, other = tmp_path / "old.json", tmp_path / "other.json"  # a record of before per-fold UA; another benchmark's
    record = json.loads((tmp_path / "b0.json").read_text())
    del record["runs"]["no_teachers/seed_0"]["fold_validation_ua"]
    old.write_text(json.dumps(record))
    other.write_text(json.dumps({**record, "benchmark": "x"}))
    for arguments, message in (
        (["--row", row, "--baseline", seed_0], "the baseline has no run at seed(s) [1] (it has [0]): pass --seeds"),
        (["--row", row, "--baseline", seed_0, seed_0], f"seed 0 of {seed_0} is already given"),
        (["--row", str(tmp_path / "a.json"), "--baseline", seed_0], "expected RECORD:ROW"),
        (["--row", f"{tmp_path / 'a.json'}:alpha_1", "--baseline", seed_0], "has no row 'alpha_1'; its rows: none"),
        (["--row", row, "--baseline", f"{old}:no_teachers"], "run no_teachers/seed_0 keeps no per-fold UA"),
        (["--row", row, "--baseline", f"{other}:no_teachers"], "is not a record of bench/seeds.py (benchmark: 'x')"),
    ):
        with pytest.raises(SystemExit):
            main(arguments)
        assert message in capsys.readouterr().err


def test_main_job(tmp_path):
    output = tmp_path / "main_job.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "main_job.py"),
            "--quick",
            "--output",
            str(output),
            "--runs_dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "main_job" and report["quick"] is True
    for name in ("cold", "warm", "no_teachers"):
        run = report["runs"][name]
        assert run["wall_s"] > 0 and run["peak_rss_mib"] > 100 and run["folds"] == 2
        assert set(run["mean"]) == {"wa", "ua", "macro_f1"} and set(run["per_carrier"]) == {"words", "voice", "both"}
        assert (tmp_path / "runs" / name / "results.json").exists()
    assert "--ablation no_teachers" in report["runs"]["no_teachers"]["command"]
    assert report["reproduced"] is True  # the warm rerun gave the cold run's results.json
    assert report["emodistill_vs_ce_only"]["folds"] == 2 and set(report["teachers_alone"]) == {
        "linguistic",
        "prosodic",
    }


def test_a_seeds_row_sets_one_setting_within_its_range():
    sys.path.insert(0, str(BENCH))
    try:
        from seeds import parse_row
    finally:
        sys.path.remove(str(BENCH))
    row = parse_row("alpha=0.25")
    assert (row.folder, row.arguments) == ("alpha_0.25", ("--alpha", "0.25"))
    row = parse_row("prosodic_teacher_level_dbfs=-23")  # a level is at most 0 dBFS
    assert (row.folder, row.arguments) == ("prosodic_teacher_level_dbfs_-23", ("--prosodic_teacher_level_dbfs", "-23"))
    assert parse_row("no_logit_kd").arguments == ("--ablation", "no_logit_kd")
    for text in ("alpha=-1", "alpha=inf", "prosodic_teacher_level_dbfs=3", "learning_rate=1", "alpha=x"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got {text!r}"):
            parse_row(text)


# Six quick trainings, a rerun, two gathers and the level probe (three calls): about 290 s alone, more when loaded.
# Rows: the full method, one setting changed, and CE-only (the ablation rows are parsed in the test above and all
# run by the ablation table in test_main_job.py).
@pytest.mark.timeout(1500)
def test_seeds(tmp_path):
    output, runs_dir = tmp_path / "seeds.json", tmp_path / "runs"
    command = [
        sys.executable,
        str(BENCH / "seeds.py"),
        "--quick",
        "--threads",
        "1",
        "--rows",
        "none",
        "alpha=0.5",
    ]
    command += ["--output", str(output), "--runs_dir", str(runs_dir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["benchmark"] == "seeds" and report["quick"] is True and report["seeds"] == [0, 1]
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
    gather = [
        sys.executable,
        str(BENCH / "seeds.py"),
        "--quick",
        "--rows",
        "none",
        "alpha=0.5",
        "--gather",
    ]
    gather += ["--output", str(gathered), "--runs_dir", str(runs_dir)]
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
    only = [sys.executable, str(BENCH / "seeds.py"), "--quick", "--rows", "--gather", "--output", str(ce_only)]
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
