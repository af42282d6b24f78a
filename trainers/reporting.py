"""What a run writes for people: `results.json` / `results.md`, the confusion-matrix PNG, the model card, and the
tables of the temperature sweep (Fig. 2) and the ablation study (Table 2), all in percent.

A mean is shown with "± std" only over two or more folds (or seeds); cards and tables name the folds that ran.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from scipy.stats import wilcoxon

import emodistill.model_cards
from emodistill.data_scripts.corpus import IEMOCAP_NAME
from emodistill.data_scripts.synthetic_iemocap import CARRIERS

from .arguments import ABLATIONS, CE_ONLY, FULL_METHOD, TEACHER_ALONE_ROWS
from .metrics import SCALAR_METRICS
from .student import BUNDLED_STUDENT
from .teachers import TEACHERS, linguistic_backbone_description

MODEL_CARD_TEMPLATE = Path(emodistill.model_cards.__file__).resolve().parent / "emodistill_template.md"
# The paper's Table 1/2 rows for HuBERT-base, to read this run's numbers against (WA, UA).
PAPER_ROWS = {
    "EmoDistill, HuBERT-base (paper)": (75.16, 76.12),
    "EmoDistill, HuBERT-large (paper)": (77.49, 78.91),
    "w/o f_T^P and f_T^L, HuBERT-base (paper)": (69.92, 70.17),
}
SYNTHETIC_LICENCE = (
    "Trained on the synthetic IEMOCAP-layout corpus that EmoDistill generates with espeak-ng (no real speech, no "
    "licence restriction). Its numbers say nothing about real emotional speech."
)
IEMOCAP_LICENCE = (
    "Trained on {corpus}, released by USC SAIL under a licence that restricts it to research use and forbids "
    "redistribution (https://sail.usc.edu/iemocap/). Check that licence before publishing or using this model."
)
PROTOCOL_DESCRIPTIONS = {
    "loso10": "leave-one-speaker-out (10 folds): each fold tests one speaker, validates on the other speaker of the "
    "same session and trains on the remaining eight",
    "loso5": "leave-one-session-out (5 folds): each fold tests one session (both speakers), validates on the next "
    "session and trains on the other three",
}


def run_config(experiment, corpus) -> dict:
    """The run's resolved configuration as `results.json` and the card record it (folders only as the user named
    them: a generated corpus and the bundled student by name, never by their place on this machine)."""
    training, student = experiment.training, experiment.student.student_model_name_or_path
    return {
        "command": experiment.command,
        "preset": experiment.run.preset,
        "corpus": corpus.name,
        "synthetic_corpus": corpus.synthetic,
        "data_dir": corpus.data_dir,
        "protocol": experiment.data.protocol,
        "label_set": experiment.data.label_set,
        "ablation": training.ablation,
        "student": student,
        "student_description": (
            "HuBERT pretrained on unlabelled synthetic speech (emodistill-hubert-synthetic, shipped with the package)"
            if student == BUNDLED_STUDENT
            else f"`{student}`"
        ),
        # How the student is fine-tuned (frozen CNN, which layers its heads read): not in its name.
        **{k: v for k, v in dataclasses.asdict(experiment.student).items() if k != "student_model_name_or_path"},
        "linguistic_backbone": linguistic_backbone_description(experiment.teachers.linguistic_teacher_name_or_path),
        "teachers": dataclasses.asdict(experiment.teachers),
        **{
            k: getattr(training, k)
            for k in (
                "alpha",
                "alpha_prosodic",
                "beta",
                "gamma",
                "tau_linguistic",
                "tau_prosodic",
                "use_linguistic_teacher",
                "use_prosodic_teacher",
                "use_logit_kd",
                "use_embedding_kd",
                "learning_rate",
                "num_train_epochs",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "seed",
            )
        },  # fmt: skip
        "teachers_used": list(training.teachers_needed),
        "world_size": training.world_size,
        "global_batch_size": training.global_batch,
        "max_train_seconds": experiment.data.max_train_seconds,
    }


def carrier_accuracy(ids, labels, predictions, carriers: dict[str, str] | None) -> dict | None:
    """Accuracy per emotion carrier (`words` / `voice` / `both`) on a synthetic corpus: what the student learnt, or
    what a teacher alone knows."""
    if carriers is None:
        return None
    table = {}
    for carrier in CARRIERS:
        rows = [i for i, utterance in enumerate(ids) if carriers.get(utterance) == carrier]
        correct = int(sum(int(labels[i]) == int(predictions[i]) for i in rows))
        table[carrier] = {"n": len(rows), "correct": correct}
    return table


def pooled_carrier_accuracy(folds: list[dict]) -> dict | None:
    """`carrier_accuracy` of each fold (a student's or a teacher's record) pooled; None if a fold has none (the real
    corpus, or a teacher record written before teachers kept their test predictions)."""
    if any(f.get("per_carrier") is None for f in folds):
        return None
    pooled = {}
    for carrier in CARRIERS:
        n = sum(f["per_carrier"][carrier]["n"] for f in folds)
        correct = sum(f["per_carrier"][carrier]["correct"] for f in folds)
        pooled[carrier] = {"n": n, "accuracy": 100 * correct / n if n else None}
    return pooled


def mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def teachers_over_seeds(results: list[dict]) -> dict:
    """Each teacher alone: its WA and UA (the mean over a run's folds), mean ± std over `results` (one run per seed)
    that trained it, and its accuracy per emotion carrier averaged over them. The paper's "w/o f_S" rows."""
    teachers = {}
    for name in TEACHERS:
        scores = [r["teachers"][name] for r in results if name in r["teachers"]]
        if scores:
            teachers[name] = {m: mean_std([s[m]["mean"] for s in scores]) for m in ("wa", "ua")}
            teachers[name]["per_carrier"] = mean_carrier_accuracy(scores)
    return teachers


def build_results(folds: list[dict], config: dict, provenance: dict) -> dict:
    folds = sorted(folds, key=lambda f: f["fold"])
    teachers = {}
    for name in TEACHERS:
        scores = [f["teachers"][name] for f in folds if name in f.get("teachers", {})]
        if scores:
            teachers[name] = {m: mean_std([s[m] for s in scores]) for m in ("wa", "ua")}
            teachers[name]["per_carrier"] = pooled_carrier_accuracy(scores)
    return {
        "folds": folds,
        "fold_numbers": [f["fold"] for f in folds],
        "mean": {m: float(np.mean([f[m] for f in folds])) for m in SCALAR_METRICS},
        "std": {m: float(np.std([f[m] for f in folds])) for m in SCALAR_METRICS},
        "teachers": teachers,
        "per_carrier": pooled_carrier_accuracy(folds),
        "label_names": folds[0]["label_names"],
        "config": config,
        "provenance": provenance,
        "fingerprints": {f["fold"]: f["fingerprint"]["hash"] for f in folds},
    }


def pm(mean: float, std: float, n: int) -> str:
    """ "m ± s" over two or more values; just "m" for one (a std of one value says nothing)."""
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def folds_description(results: dict) -> str:
    numbers, protocol = results["fold_numbers"], results["config"]["protocol"]
    total = 10 if protocol == "loso10" else 5
    which = (
        "all" if len(numbers) == total else f"fold{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))} of"
    )
    return f"{which} {total} folds of {PROTOCOL_DESCRIPTIONS[protocol].split(' (')[0]}"


def results_table(results: dict) -> str:
    """The paper's table layout (variant, WA, UA) with this run's rows first, then its per-fold rows."""
    config, n = results["config"], len(results["folds"])
    mean, std = results["mean"], results["std"]
    variant = ABLATIONS[config.get("ablation", FULL_METHOD)].paper_row
    lines = ["| Variant | Inf. backbone | WA | UA | macro-F1 |", "|---|---|---|---|---|"]
    lines.append(
        f"| {variant} (this run) | {config['student']} | {pm(mean['wa'], std['wa'], n)} | "
        f"{pm(mean['ua'], std['ua'], n)} | {pm(mean['macro_f1'], std['macro_f1'], n)} |"
    )
    for name, scores in results["teachers"].items():
        lines.append(
            f"| {TEACHER_ALONE_ROWS[name]} ({name} teacher alone, this run) | teacher | "
            f"{pm(scores['wa']['mean'], scores['wa']['std'], scores['wa']['n'])} | "
            f"{pm(scores['ua']['mean'], scores['ua']['std'], scores['ua']['n'])} | |"
        )
    for name, (wa, ua) in PAPER_ROWS.items():
        lines.append(f"| {name} | | {wa:.2f} | {ua:.2f} | |")
    lines += [
        "",
        "| Fold | Test speaker(s) | n | WA | UA | macro-F1 | validation UA | teacher L UA | teacher P UA |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in results["folds"]:
        teachers = f.get("teachers", {})
        lingu = f"{teachers['linguistic']['ua']:.2f}" if "linguistic" in teachers else "–"
        proso = f"{teachers['prosodic']['ua']:.2f}" if "prosodic" in teachers else "–"
        validation = percent(f["validation_ua"], 2)
        lines.append(
            f"| {f['fold']} | {', '.join(f['test_speakers'])} | {f['n']} | {f['wa']:.2f} | {f['ua']:.2f} | "
            f"{f['macro_f1']:.2f} | {validation} | {lingu} | {proso} |"
        )
    if results["per_carrier"]:
        # Beside the student, each teacher alone on the same test utterances: what there was to transfer.
        teachers = {name: t["per_carrier"] for name, t in results["teachers"].items() if t.get("per_carrier")}
        header = ["Emotion carried by", "n", "accuracy", *(f"{name} teacher alone" for name in teachers)]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for carrier, row in results["per_carrier"].items():
            cells = [row["accuracy"]] + [table[carrier]["accuracy"] for table in teachers.values()]
            lines.append(f"| {carrier} | {row['n']} | " + " | ".join(percent(v, 2) for v in cells) + " |")
    return "\n".join(lines)


def percent(value: float | None, digits: int = 1) -> str:
    """A table cell: the value with `digits` decimals, or "–" where there is none (e.g. no utterance of a carrier)."""
    return "–" if value is None else f"{value:.{digits}f}"


def carrier_cells(accuracy: dict[str, float | None] | None) -> str:
    """The `words | voice | both` cells of a table row from accuracies by carrier ("–" for each without one)."""
    return " | ".join(percent((accuracy or {}).get(carrier)) for carrier in CARRIERS)


def write_results(results: dict, output_dir: Path) -> None:
    output_dir = Path(output_dir)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    config = results["config"]
    markdown = [
        f"# EmoDistill results: {config['corpus']}, {folds_description(results)}",
        "",
        f"Command: `{config['command']}`",
        "",
        "WA = overall accuracy, UA = mean per-class recall, in %"
        + (", mean ± std over the folds." if len(results["folds"]) > 1 else ", one fold."),
        "",
        results_table(results),
        "",
    ]
    (output_dir / "results.md").write_text("\n".join(markdown))
    title = f"{ABLATIONS[config['ablation']].paper_row}, {output_dir.name}: {len(results['folds'])} test fold(s)"
    plot_confusion(
        np.sum([f["confusion"] for f in results["folds"]], axis=0),
        results["label_names"],
        output_dir / "confusion_matrix.png",
        title,
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: np.ndarray, label_names: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (rows = true class) summed over folds, with the counts in each cell."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    recall = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(label_names)):
        for j in range(len(label_names)):
            ax.text(
                j,
                i,
                f"{recall[i, j]:.2f}\n({confusion[i, j]})",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if recall[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(label_names)), label_names, rotation=30)
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tau_sweep(sweep: dict, directory: Path) -> None:
    """`tau_sweep.json`, `tau_sweep.md` (validation and test UA per temperature, the validation pick marked) and the
    plot of Fig. 2."""
    (directory / "tau_sweep.json").write_text(json.dumps(sweep, indent=1) + "\n")
    symbol = "tau_P" if sweep["teacher"] == "prosodic" else "tau_L"
    lines = [
        f"# Temperature sweep: {sweep['teacher']} teacher only ({sweep['removed']} teacher removed)",
        "",
        f"{symbol} is chosen by the mean validation UA (marked); test scores are shown, not used.",
        "",
        f"| {symbol} | validation UA | test WA | test UA |",
        "|---|---|---|---|",
    ]
    for p in sweep["points"]:
        mark = " **(validation pick)**" if p["tau"] == sweep["chosen_by_validation"] else ""
        lines.append(
            f"| {p['tau']:g}{mark} | {p['validation_ua']:.2f} | {p['wa']:.2f} ± {p['std']['wa']:.2f} | "
            f"{p['ua']:.2f} ± {p['std']['ua']:.2f} |"
        )
    (directory / "tau_sweep.md").write_text("\n".join(lines) + "\n")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    taus = [p["tau"] for p in sweep["points"]]
    for metric in ("wa", "ua"):
        ax.errorbar(
            taus,
            [p[metric] for p in sweep["points"]],
            yerr=[p["std"][metric] for p in sweep["points"]],
            marker="o",
            capsize=3,
            label=f"test {metric.upper()}",
        )
    ax.plot(taus, [p["validation_ua"] for p in sweep["points"]], "k--", marker="s", label="validation UA")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(symbol)
    ax.set_ylabel("%")
    ax.set_title(f"{sweep['removed']} teacher removed")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / "tau_sweep.png", dpi=120)
    plt.close(fig)


def fold_ua(runs: list[dict]) -> dict[int, list[float]]:
    """Fold -> its test UA in each run (the `results.json` of each seed, in order): what `paired_comparison` takes."""
    table = {}
    for results in runs:
        for fold in results["folds"]:
            table.setdefault(fold["fold"], []).append(fold["ua"])
    return table


def mean_validation_ua(results: dict) -> float:
    """The mean over folds of the student's validation UA (its best epoch's, on the fold's validation speaker): what a
    choice between configurations may look at."""
    return float(np.mean([f["validation_ua"] for f in results["folds"] if f["validation_ua"] is not None]))


def format_p(comparison: dict) -> str:
    """The Wilcoxon p of a `paired_comparison`, or "–" where there is none (one fold, or no difference)."""
    return "–" if comparison["wilcoxon_p"] is None else f"{comparison['wilcoxon_p']:.4f}"


def paired_comparison(row: dict[int, list[float]], baseline: dict[int, list[float]]) -> dict:
    """Per-fold wins of `row` over `baseline` (UA averaged over seeds per fold) and the two-sided Wilcoxon
    signed-rank p-value over the folds."""
    folds = sorted(row)
    ours = np.array([np.mean(row[f]) for f in folds])
    theirs = np.array([np.mean(baseline[f]) for f in folds])
    difference = ours - theirs
    p_value = None
    if len(folds) > 1 and np.any(difference != 0):
        p_value = float(wilcoxon(ours, theirs).pvalue)
    return {"wins": int((difference > 0).sum()), "folds": len(folds), "mean_difference": float(difference.mean()),
            "wilcoxon_p": p_value}  # fmt: skip


def mean_carrier_accuracy(runs: list[dict]) -> dict | None:
    """Accuracy per emotion carrier averaged over runs (`results.json` of each seed); None on a corpus without
    carriers."""
    if not all(r.get("per_carrier") for r in runs):
        return None
    carriers = {}
    for carrier in CARRIERS:  # a fold set without an utterance of a carrier has no accuracy for it
        values = [r["per_carrier"][carrier]["accuracy"] for r in runs]
        carriers[carrier] = None if None in values else float(np.mean(values))
    return carriers


def ablation_summary(table: dict) -> dict:
    """Per ablation row: mean ± std over seeds of the fold means, per-fold UA, comparison with CE-only, carriers."""
    seeds, runs = table["seeds"], table["runs"]
    rows = {}
    for ablation in ABLATIONS:
        per_seed = [runs[f"{ablation}/seed_{s}"] for s in seeds]
        carriers = mean_carrier_accuracy(per_seed)
        rows[ablation] = {
            "paper_row": ABLATIONS[ablation].paper_row,
            **{m: mean_std([r["mean"][m] for r in per_seed]) for m in ("wa", "ua")},
            "fold_ua": fold_ua(per_seed),
            "per_carrier": carriers,
        }
    for ablation, row in rows.items():
        if ablation != CE_ONLY:
            row["vs_ce_only"] = paired_comparison(row["fold_ua"], rows[CE_ONLY]["fold_ua"])
    teachers = teachers_over_seeds([runs[f"none/seed_{s}"] for s in seeds])
    return {"seeds": seeds, "rows": rows, "teachers": teachers}


def write_ablation_table(table: dict, directory: Path) -> None:
    summary = ablation_summary(table)
    (directory / "ablation_table.json").write_text(json.dumps(summary, indent=1) + "\n")
    seeds = summary["seeds"]
    n = len(seeds)
    lines = [
        "# Ablation study (the paper's Table 2) on this run's corpus",
        "",
        f"Mean over {n} seed(s) ({', '.join(map(str, seeds))}) of the mean over folds, in %"
        + (" (± std over seeds)" if n > 1 else "")
        + ". Wins: folds where the row's UA (averaged over seeds) beats CE-only's; p: two-sided Wilcoxon "
        "signed-rank test over those folds.",
        "",
        "| Variant | WA | UA | UA − CE-only | wins vs CE-only | p (Wilcoxon) | words | voice | both |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"].values():
        versus = row.get("vs_ce_only")
        lines.append(
            f"| {row['paper_row']} | {pm(row['wa']['mean'], row['wa']['std'], n)} | "
            f"{pm(row['ua']['mean'], row['ua']['std'], n)} | "
            + (
                f"{versus['mean_difference']:+.2f} | {versus['wins']}/{versus['folds']} | " + format_p(versus)
                if versus
                else "(baseline) | | "
            )
            + " | "
            + carrier_cells(row["per_carrier"])
            + " |"
        )
    for name, scores in summary["teachers"].items():
        lines.append(
            f"| {TEACHER_ALONE_ROWS[name]} ({name} teacher alone) | {pm(scores['wa']['mean'], scores['wa']['std'], n)} "
            f"| {pm(scores['ua']['mean'], scores['ua']['std'], n)} | | | | {carrier_cells(scores['per_carrier'])} |"
        )
    if any(row["per_carrier"] for row in summary["rows"].values()):
        lines += [
            "",
            "words / voice / both: test accuracy on the utterances whose emotion is carried by the words only, the "
            "voice only, or both (the synthetic corpus's ground truth), pooled over folds.",
        ]
    (directory / "ablation_table.md").write_text("\n".join(lines) + "\n")


def model_card(results: dict, fold: dict, repo_id: str) -> ModelCard:
    """A model card for one fold's student, with `model-index` results (mean over the folds that ran) and
    provenance."""
    config, n = results["config"], len(results["folds"])
    synthetic = config["synthetic_corpus"]
    eval_results = [
        EvalResult(
            task_type="audio-classification",
            task_name="Speech emotion recognition",
            # The hub's dataset id only for the published release; other corpora get a type of their own.
            dataset_type="iemocap" if config["corpus"] == IEMOCAP_NAME else "iemocap-layout",
            dataset_name=config["corpus"],
            dataset_config=config["label_set"],
            dataset_split=f"speaker-independent cross-validation: {folds_description(results)}",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(results["mean"][key], 2),
        )
        for key, metric_type, metric_name in (("wa", "accuracy", "WA"), ("ua", "recall", "UA (mean per-class recall)"))
    ]
    student = config["student"]
    card_data = ModelCardData(
        language="en",
        license="apache-2.0" if synthetic else "other",
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["speech-emotion-recognition", "knowledge-distillation", "hubert", "emodistill"],
        base_model=student if "/" in student and not Path(student).exists() else None,
        metrics=["accuracy", "recall"],
        model_name=repo_id,
        eval_results=eval_results,
    )
    label_set = config["label_set"]
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        labels=", ".join(results["label_names"]),
        corpus=config["corpus"],
        label_protocol="4 classes (neutral, angry, sad, happy with excited merged in)"
        if label_set == "4class"
        else f"label set `{label_set}`",
        protocol_description=f"{PROTOCOL_DESCRIPTIONS[config['protocol']]}; this run: {folds_description(results)}",
        fold=fold["fold"],
        test_speakers=", ".join(fold["test_speakers"]),
        validation_speakers=", ".join(fold["validation_speakers"]),
        linguistic_backbone=config["linguistic_backbone"],
        student_description=config["student_description"],
        alpha=config["alpha"],
        alpha_prosodic=config.get("alpha_prosodic"),  # absent from records written before the option
        prosodic_level_dbfs=config["teachers"].get("prosodic_teacher_level_dbfs"),  # likewise
        beta=config["beta"],
        gamma=config["gamma"],
        tau_linguistic=config["tau_linguistic"],
        tau_prosodic=config["tau_prosodic"],
        ablation=config["ablation"],
        spread="mean ± std over the folds" if n > 1 else "one fold",
        results_table=results_table(results),
        command=config["command"],
        data_licence=SYNTHETIC_LICENCE if synthetic else IEMOCAP_LICENCE.format(corpus=config["corpus"]),
    )
