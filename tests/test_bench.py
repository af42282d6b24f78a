"""Each benchmark runs with `--quick` and writes the documented JSON (values are timings: only their form is checked)."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emodistill.trainers.results import ISA_CAPS

BENCH = Path(__file__).resolve().parent.parent / "bench"
MACHINE_KEYS = {
    "cpu_count",
    "torch_threads",
    "cpu_capability",
    "torch_version",
    "date",
    "command",
    "load_average_at_start",
    "isa_caps",
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


def test_student_step(tmp_path):
    report = run_quick("student_step", tmp_path)
    sides = {f"{p}/{d}" for p in ("float32", "bf16") for d in report["dropouts"]}
    assert set(report["seconds_per_step"]) == sides and isinstance(report["native_bf16"], bool)
    ratios = report["ratio_to_float32_checkpoint_dropout"]
    assert set(ratios) == sides - {"float32/checkpoint_dropout"}
    for summary in ratios.values():
        assert_ratio(summary, report["repetitions"])
    assert report["dropouts"]["no_attention_activation_dropout"] == {
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
    }


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
            "torch_threads": [2],
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


def test_seeds_from_records_joins_runs_of_several_records(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        from seeds import main
    finally:
        sys.path.remove(str(BENCH))
    ours, ce, ce_again, differs = (tmp_path / f"{name}.json" for name in ("ours", "ce", "ce_again", "differs"))
    seeds_record(ours, "none", "Ours", {0: {1: 80, 2: 70, 3: 60}, 1: {1: 82, 2: 72, 3: 66}})
    teachers = {"linguistic": {"ua": {"mean": 75.0, "std": 1.0, "n": 2}, "wa": {"mean": 76.0, "std": 1.0, "n": 2}}}
    ours.write_text(json.dumps({**json.loads(ours.read_text()), "teachers_alone": teachers}))
    # CE-only in two records, seed 1 in both (one run gathered twice, as beside two sets of rows), and in a third
    # that disagrees on fold 3 (neither the same run nor a reproduction of it).
    ce_only = {0: {1: 75, 2: 71, 3: 49}, 1: {1: 79, 2: 70, 3: 60}}
    seeds_record(ce, "no_teachers", "CE-only", ce_only)
    seeds_record(ce_again, "no_teachers", "CE-only", {1: ce_only[1]})
    seeds_record(differs, "no_teachers", "CE-only", {1: {**ce_only[1], 3: 61}})
    output = tmp_path / "joined.json"

    def seeds(*arguments):
        monkeypatch.setattr(sys, "argv", ["seeds.py", *map(str, arguments), "--output", str(output)])
        main()
        return json.loads(output.read_text())

    report = seeds("--seeds", 0, 1, "--rows", "none", "--from_records", ours, ce, ce_again)
    assert report["from_records"] == [str(ours), str(ce), str(ce_again)] and report["gathered"] is False
    assert report["runs"]["no_teachers/seed_1"]["records"] == [str(ce), str(ce_again)]
    assert report["runs"]["none/seed_0"]["records"] == [str(ours)]
    # Seed 0: differences +5, -1, +11; seed 1: +3, +2, +6; fold UA averaged over seeds: +4, +0.5, +8.5.
    first, second = (p["vs_ce_only"]["none"] for p in report["per_seed"])
    assert first["wins"] == 2 and first["mean_difference"] == pytest.approx(5)
    assert second["wins"] == 3 and second["wilcoxon_p"] == pytest.approx(0.25)  # 2 x (1/2)^3
    averaged = report["over_seeds"]["vs_ce_only_on_fold_ua_averaged_over_seeds"]["none"]
    assert averaged["wins"] == 3 and averaged["mean_difference"] == pytest.approx(13 / 3)
    assert report["per_seed"][0]["validation_ua"] == {"none": 69, "no_teachers": 64}  # the records' own
    assert report["over_seeds"]["ua"]["none"]["mean"] == pytest.approx((70 + 220 / 3) / 2)
    # The teachers alone: those of the record that holds the full method at exactly these seeds; none at one seed.
    assert report["teachers_alone"] == teachers
    assert "Runs taken from the records" in output.with_suffix(".md").read_text()
    assert seeds("--seeds", 0, "--rows", "none", "--from_records", ours, ce)["teachers_alone"] == {}
    for arguments, message in (
        (
            ["--rows", "--from_records", ce, differs],
            f"no_teachers/seed_1 differs between {ce} and {differs} in fold_ua",
        ),
        (["--rows", "none", "--from_records", ce], "no record holds the run none/seed_0"),
        (["--from_records", ce, "--runs_dir", tmp_path / "runs"], "--from_records reads records, not runs"),
    ):
        with pytest.raises(SystemExit):
            seeds("--seeds", 0, 1, *arguments)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


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
    assert MACHINE_KEYS <= report["machine"].keys()  # the other benchmarks' record, instruction-set caps included
    for name in ("cold", "warm", "no_teachers"):
        run = report["runs"][name]
        assert run["wall_s"] > 0 and run["peak_rss_mib"] > 100 and run["folds"] == 2
        # train.py's own work: at least its imports (seconds of CPU), and a share of the machine's time, if known.
        assert run["cpu_s"] > 1 and (run["steal_fraction"] is None or 0 <= run["steal_fraction"] <= 1)
        assert set(run["mean"]) == {"wa", "ua", "macro_f1"} and set(run["per_carrier"]) == {"words", "voice", "both"}
        assert (tmp_path / "runs" / name / "results.json").exists()
    assert "--ablation no_teachers" in report["runs"]["no_teachers"]["command"]
    assert report["reproduced"] is True  # the warm rerun gave the cold run's results.json
    assert report["emodistill_vs_ce_only"]["folds"] == 2 and set(report["teachers_alone"]) == {
        "linguistic",
        "prosodic",
    }


def test_the_machine_record_names_the_instruction_set_caps_that_are_set(monkeypatch):
    sys.path.insert(0, str(BENCH))
    from common import machine_info

    for name in ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    assert machine_info()["isa_caps"] == {}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert machine_info()["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_steal_fraction_is_the_steal_share_of_the_ticks_between_two_readings():
    sys.path.insert(0, str(BENCH))
    from main_job import steal_fraction

    #         user nice system idle iowait irq softirq steal
    before = [100, 0, 10, 50, 0, 0, 0, 40]
    after = [160, 0, 20, 70, 0, 0, 0, 70]  # 60 + 10 + 20 + 30 = 120 ticks, 30 of them stolen
    assert steal_fraction(before, after) == 0.25
    assert steal_fraction(None, after) is None and steal_fraction(before, before) is None


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
