"""What a cross-validated run writes: `results.json`, `results.md`, the confusion-matrix PNG and the model card."""

import json
from pathlib import Path

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData

import emodistill.model_cards

MODEL_CARD_TEMPLATE = Path(emodistill.model_cards.__file__).resolve().parent / "emodistill_template.md"
SUMMARY_METRICS = ("wa", "ua", "macro_f1")
# The paper's Table 1/2 rows for HuBERT-base, to read this run's numbers against (WA, UA).
PAPER_ROWS = {
    "EmoDistill, HuBERT-base (paper)": (75.16, 76.12),
    "EmoDistill, HuBERT-large (paper)": (77.49, 78.91),
    "w/o f_T^P and f_T^L, HuBERT-base (paper)": (69.92, 70.17),
}
# The paper's names of the ablation rows (Table 2).
ABLATION_NAMES = {
    "none": "EmoDistill",
    "no_logit_kd": "w/o L_logits",
    "no_embedding_kd": "w/o L_embedding",
    "no_prosodic_teacher": "w/o f_T^P",
    "no_linguistic_teacher": "w/o f_T^L",
    "no_teachers": "w/o f_T^P and f_T^L (CE only)",
}
SYNTHETIC_LICENCE = (
    "Trained on the synthetic IEMOCAP-layout corpus that EmoDistill generates with espeak-ng (no real speech, no "
    "licence restriction). Its numbers say nothing about real emotional speech."
)
IEMOCAP_LICENCE = (
    "Trained on IEMOCAP, released by USC SAIL under a licence that restricts it to research use and forbids "
    "redistribution (https://sail.usc.edu/iemocap/). Check that licence before publishing or using this model."
)


def summarize(folds: list[dict]) -> tuple[dict, dict]:
    """Mean and (population) standard deviation over folds of WA, UA and macro-F1."""
    mean = {m: float(np.mean([f[m] for f in folds])) for m in SUMMARY_METRICS}
    std = {m: float(np.std([f[m] for f in folds])) for m in SUMMARY_METRICS}
    return mean, std


def teacher_summary(folds: list[dict]) -> dict:
    """Mean ± std over folds of each teacher's test WA/UA: the paper's "w/o f_S" rows."""
    summary = {}
    for name in ("linguistic", "prosodic"):
        scores = [f["teachers"][name] for f in folds if name in f.get("teachers", {})]
        if scores:
            summary[name] = {
                m: {"mean": float(np.mean([s[m] for s in scores])), "std": float(np.std([s[m] for s in scores]))}
                for m in ("wa", "ua")
            }
    return summary


def build_results(folds: list[dict], config: dict) -> dict:
    folds = sorted(folds, key=lambda f: f["fold"])
    mean, std = summarize(folds)
    return {"folds": folds, "mean": mean, "std": std, "teachers": teacher_summary(folds), "config": config}


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def results_table(results: dict) -> str:
    """The paper's table layout (variant, WA, UA) with this run's rows first, then its per-fold rows."""
    config = results["config"]
    mean, std = results["mean"], results["std"]
    variant = ABLATION_NAMES[config.get("ablation", "none")]
    lines = ["| Variant | Inf. backbone | WA | UA | macro-F1 |", "|---|---|---|---|---|"]
    lines.append(
        f"| {variant} (this run) | {config.get('student', 'student')} | {_pm(mean['wa'], std['wa'])} | "
        f"{_pm(mean['ua'], std['ua'])} | {_pm(mean['macro_f1'], std['macro_f1'])} |"
    )
    names = {
        "linguistic": "w/o f_S and f_T^P (linguistic teacher alone)",
        "prosodic": "w/o f_S and f_T^L (prosodic teacher alone)",
    }
    for name, scores in results["teachers"].items():
        lines.append(
            f"| {names[name]} (this run) | teacher | {_pm(scores['wa']['mean'], scores['wa']['std'])} | "
            f"{_pm(scores['ua']['mean'], scores['ua']['std'])} | |"
        )
    for name, (wa, ua) in PAPER_ROWS.items():
        lines.append(f"| {name} | | {wa:.2f} | {ua:.2f} | |")
    lines += [
        "",
        "| Fold | Test speaker(s) | n | WA | UA | macro-F1 | teacher L UA | teacher P UA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in results["folds"]:
        teachers = f.get("teachers", {})
        lingu = f"{teachers['linguistic']['ua']:.2f}" if "linguistic" in teachers else "–"
        proso = f"{teachers['prosodic']['ua']:.2f}" if "prosodic" in teachers else "–"
        lines.append(
            f"| {f['fold']} | {', '.join(f['test_speakers'])} | {f['n']} | {f['wa']:.2f} | {f['ua']:.2f} | "
            f"{f['macro_f1']:.2f} | {lingu} | {proso} |"
        )
    return "\n".join(lines)


def write_results(results: dict, output_dir: Path, label_names: list[str]) -> None:
    output_dir = Path(output_dir)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    config = results["config"]
    markdown = [
        f"# EmoDistill results: {config['corpus']}, {config['protocol']}",
        "",
        f"Command: `{config['command']}`",
        "",
        "WA = overall accuracy, UA = mean per-class recall, in %, mean ± std over "
        f"{len(results['folds'])} speaker-independent folds.",
        "",
        results_table(results),
        "",
    ]
    (output_dir / "results.md").write_text("\n".join(markdown))
    plot_confusion(
        np.sum([f["confusion"] for f in results["folds"]], axis=0), label_names, output_dir / "confusion_matrix.png"
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: np.ndarray, label_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (rows = true class) summed over folds, with the counts in each cell."""
    plt = _pyplot()
    confusion = np.asarray(confusion)
    recall = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
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
    ax.set_title("Confusion, all test folds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tau_sweep(points: list[dict], teacher: str, path: Path) -> None:
    """Fig. 2 of the paper: mean ± std WA and UA over folds against the remaining teacher's temperature."""
    plt = _pyplot()
    removed = "linguistic" if teacher == "prosodic" else "prosodic"
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for metric in ("wa", "ua"):
        ax.errorbar(
            [p["tau"] for p in points],
            [p[metric] for p in points],
            yerr=[p["std"][metric] for p in points],
            marker="o",
            capsize=3,
            label=metric.upper(),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"tau_{'P' if teacher == 'prosodic' else 'L'}")
    ax.set_ylabel("%")
    ax.set_title(f"{removed} teacher removed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def model_card(results: dict, fold: dict, label_names: list[str], repo_id: str) -> ModelCard:
    """A model card for one fold's student, with `model-index` results (mean over folds) and provenance."""
    config = results["config"]
    synthetic = config["synthetic_corpus"]
    dataset_name = "Synthetic IEMOCAP-layout corpus (espeak-ng)" if synthetic else "IEMOCAP"
    eval_results = [
        EvalResult(
            task_type="audio-classification",
            task_name="Speech emotion recognition",
            dataset_type="iemocap",
            dataset_name=dataset_name,
            dataset_config=config["label_set"],
            dataset_split=f"{config['protocol']} speaker-independent cross-validation",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=round(results["mean"][key], 2),
        )
        for key, metric_type, metric_name in (("wa", "accuracy", "WA"), ("ua", "recall", "UA (mean per-class recall)"))
    ]
    card_data = ModelCardData(
        language="en",
        license="other" if not synthetic else "apache-2.0",
        library_name="transformers",
        pipeline_tag="audio-classification",
        tags=["speech-emotion-recognition", "knowledge-distillation", "hubert", "emodistill"],
        base_model=config.get("student_model_name_or_path") or None,
        metrics=["accuracy", "recall"],
        model_name=repo_id,
        eval_results=eval_results,
    )
    protocols = {
        "loso10": "10-fold leave-one-speaker-out: each fold tests one speaker, validates on the other speaker of "
        "the same session and trains on the remaining eight",
        "loso5": "5-fold leave-one-session-out: each fold tests one session (both speakers), validates on the next "
        "session and trains on the other three",
    }
    return ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        labels=", ".join(label_names),
        corpus=dataset_name,
        label_protocol="4 classes (neutral, angry, sad, happy with excited merged in)"
        if config["label_set"] == "4class"
        else f"label set `{config['label_set']}`",
        protocol_description=protocols[config["protocol"]],
        fold=fold["fold"],
        test_speakers=", ".join(fold["test_speakers"]),
        validation_speakers=", ".join(fold["validation_speakers"]),
        linguistic_backbone=config["linguistic_backbone"],
        student_description=config["student"],
        alpha=config["alpha"],
        beta=config["beta"],
        gamma=config["gamma"],
        tau_linguistic=config["tau_linguistic"],
        tau_prosodic=config["tau_prosodic"],
        ablation=config["ablation"],
        results_table=results_table(results),
        command=config["command"],
        data_licence=SYNTHETIC_LICENCE if synthetic else IEMOCAP_LICENCE,
    )
