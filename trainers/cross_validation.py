"""Speaker-independent cross-validation of EmoDistill: per fold, the teachers (trained once, cached), the student
distilled from them, its test predictions; then the summary. Also the paper's temperature sweep (Fig. 2) and its
ablation table (Table 2), each a set of cross-validations.

Every function takes one `Experiment` (the parsed configuration) and the prepared `Corpus`.
"""

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from transformers import AutoConfig, set_seed
from transformers.trainer_utils import get_last_checkpoint

from emodistill.data_scripts.audio import SAMPLING_RATE
from emodistill.data_scripts.corpus import IEMOCAP_NAME, Corpus
from emodistill.data_scripts.folds import FoldDatasetDict, save_folds, speaker_folds

from .arguments import ABLATIONS
from .collator import EmoDistillDataCollator, evaluation_batch_size
from .experiment import Experiment
from .metrics import first_output, make_compute_metrics, ser_scores
from .reporting import (
    build_results,
    carrier_accuracy,
    mean_validation_ua,
    model_card,
    run_config,
    write_ablation_table,
    write_results,
    write_tau_sweep,
)
from .results import (
    FINGERPRINT_FILENAME,
    PREDICTIONS_FILENAME,
    RESULT_FILENAME,
    TRAINING_FIELDS_WITHOUT_EFFECT,
    check_fold_fingerprint,
    claim_output_dir,
    cpu_arithmetic,
    fingerprint_hash,
    gather_fold_results,
    provenance,
    push_fold_to_hub,
    read_json,
    require_fingerprint,
    source_digest,
    write_json,
    write_predictions,
)
from .student import build_student, resolve_student
from .teacher_training import attach_teacher_outputs, train_teacher
from .teachers import resolve_linguistic_backbone
from .trainer import EmoDistillTrainer, quiet_trainer

logger = logging.getLogger("emodistill.cross_validation")


def _checkpoint_digest(path: str) -> str | None:
    """A local checkpoint's content (config and weights), so a rebuilt student is another experiment."""
    folder = Path(path)
    if not folder.is_dir():
        return None  # a hub id: its name is its identity
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:20]


def fold_fingerprint(experiment: Experiment, corpus: Corpus, fold: FoldDatasetDict) -> dict:
    """Everything that determines the fold's result, in named parts (JSON values, comparable with a stored one)."""
    training = experiment.training
    settings = {
        f.name: getattr(training, f.name)
        for f in dataclasses.fields(training)
        if f.init and f.name not in TRAINING_FIELDS_WITHOUT_EFFECT
    }
    membership = {split: list(fold[split]["id"]) for split in ("train", "validation", "test")}
    components = {
        "code": {"source": source_digest()},
        "data": {
            "corpus": corpus.name,
            "content": corpus.fingerprint,
            "label_set": experiment.data.label_set,
            "max_train_seconds": experiment.data.max_train_seconds,
        },
        "fold": {
            "protocol": fold.spec.protocol,
            "number": fold.spec.fold,
            "membership": fingerprint_hash(membership),
        },
        "student": {
            **dataclasses.asdict(experiment.student),
            "checkpoint": _checkpoint_digest(resolve_student(experiment.student.student_model_name_or_path)),
        },
        "teachers": {name: experiment.teachers.recipe(name) for name in training.teachers_needed},
        "training": {**settings, "world_size": training.world_size},
    }
    return json.loads(json.dumps(components, default=str))


def student_split(split: Dataset, teacher_results: dict, max_samples: int | None = None) -> Dataset:
    """The student's view of a split: id, waveform, label, `length`, teacher columns.

    `length` is the samples a row has in a batch: its whole waveform, or at most `max_samples` for a training split
    that `EmoDistillDataCollator(random_crop=True)` crops; length-grouped batching groups by it. Rows come as NumPy
    arrays: the same values as the default Python lists (the collator makes float32 arrays of either), without
    building a Python float per sample, which took most of the batches' loading time."""
    lengths = [n if max_samples is None else min(n, max_samples) for n in split["num_samples"]]
    split = split.select_columns(["id", "input_values", "label"]).add_column("length", lengths)
    return attach_teacher_outputs(split, teacher_results).with_format("numpy")


def _teacher_record(meta: dict, test: Dataset, carriers: dict[str, str] | None) -> dict:
    """A teacher alone on the fold's test speakers (the paper's "w/o f_S" rows), per emotion carrier too."""
    predictions = meta["test"]["predictions"]
    ids = list(test["id"])
    return {
        **{k: 100 * meta["test"][k] for k in ("wa", "ua", "macro_f1")},
        "per_carrier": carrier_accuracy(ids, test["label"], [predictions[i] for i in ids], carriers),
        "validation_ua": 100 * meta["training"]["validation_ua"],
        "best_epoch": meta["training"]["best_epoch"],
        "trained_on_speakers": meta["trained_on_speakers"],
        "early_stopping_speakers": meta["early_stopping_speakers"],
        "cache_entry": meta["cache_entry"],
        "float_path": meta["float_path"],
    }


def run_fold(experiment: Experiment, corpus: Corpus, fold: FoldDatasetDict, fold_dir: Path) -> dict:
    """Teachers (cached), then the student; saves the student and its test predictions; returns the fold's record
    (scores in percent)."""
    training, label_names = experiment.training, corpus.label_names
    teacher_results = {
        name: train_teacher(
            name,
            fold,
            experiment.teachers,
            experiment.data.cache_dir,
            num_labels=len(label_names),
            seed=training.seed,
            run_args=training,
            label_names=label_names,
        )
        for name in training.teachers_needed
    }
    backbone = resolve_linguistic_backbone(experiment.teachers.linguistic_teacher_name_or_path)
    # The student's initialisation must not depend on whether the teachers were trained in this process or read
    # from the cache (nor on the ablation): seed right before building it.
    set_seed(training.seed)
    model, extractor = build_student(
        experiment.student.student_model_name_or_path,
        label_names,
        linguistic_embedding_dim=AutoConfig.from_pretrained(backbone).hidden_size,
        prosodic_embedding_dim=experiment.teachers.prosodic_teacher_embedding_dim,
        freeze_feature_encoder=experiment.student.freeze_feature_encoder,
        use_weighted_layer_sum=experiment.student.use_weighted_layer_sum,
        normalize_waveform=experiment.student.normalize_waveform,
        config_overrides=experiment.student.dropouts,
    )
    seconds = experiment.data.max_train_seconds
    max_samples = None if seconds is None else int(seconds * SAMPLING_RATE)
    train = student_split(fold["train"], teacher_results, max_samples)
    validation = student_split(fold["validation"], teacher_results)
    test = student_split(fold["test"], {})  # no teacher signal ever reaches the test split

    # A student without attention mask (group norm) must never be scored on a batch of mixed lengths.
    eval_batch = evaluation_batch_size(extractor, training.per_device_eval_batch_size)
    args = dataclasses.replace(
        training, output_dir=str(fold_dir / "checkpoints"), push_to_hub=False, per_device_eval_batch_size=eval_batch
    )
    trainer = EmoDistillTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=EmoDistillDataCollator(extractor, random_crop=max_samples is not None),
        compute_metrics=make_compute_metrics(label_names, percent=True),
    )
    quiet_trainer(trainer, f"Fold {fold.spec.fold} student")
    checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if checkpoint:
        logger.info("Fold %d: resuming from %s", fold.spec.fold, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    prediction = trainer.predict(test)  # gathered across processes, each test utterance exactly once
    logits = torch.from_numpy(np.asarray(first_output(prediction.predictions), dtype=np.float32))
    probabilities = logits.softmax(-1).numpy()
    labels, ids = prediction.label_ids, list(fold["test"]["id"])
    # The per-utterance records rely on dataset order, which EmoDistillTrainer's sequential evaluation sampler keeps
    # (tests/test_trainer.py checks it by id); labels are all that comes back here, so this catches gross reordering.
    if not np.array_equal(labels, fold["test"]["label"]):
        raise RuntimeError(f"Fold {fold.spec.fold}: the test predictions are not in the test split's order.")
    scores = ser_scores(probabilities.argmax(-1), labels, len(label_names), label_names)
    if training.should_save:
        # `save_pretrained`, not `trainer.save_model`: the published folder holds safetensors and JSON only (no
        # pickled training_args.bin).
        trainer.model.save_pretrained(fold_dir / "model")
        extractor.save_pretrained(fold_dir / "model")
        write_predictions(fold_dir / PREDICTIONS_FILENAME, ids, labels, probabilities, label_names)
    spec = fold.spec
    return {
        "fold": spec.fold,
        "test_speakers": list(spec.test),
        "validation_speakers": list(spec.validation),
        "train_speakers": list(spec.train),
        "test_speaker": ",".join(spec.test),
        "label_names": label_names,
        "n": len(labels),
        **{k: 100 * scores[k] for k in ("wa", "ua", "macro_f1")},
        "per_class_recall": {k: None if v is None else 100 * v for k, v in scores["per_class_recall"].items()},
        "confusion": scores["confusion"],
        "per_carrier": carrier_accuracy(ids, labels, probabilities.argmax(-1), corpus.carriers),
        "validation_ua": trainer.state.best_metric,
        "evaluation_batch_size": eval_batch,
        # Per fold: `results.json`'s provenance has the thread count and kernels of the run that summarised, maybe a
        # resume.
        **cpu_arithmetic(),
        "teachers": {
            name: _teacher_record(result.meta, fold["test"], corpus.carriers)
            for name, result in teacher_results.items()
        },
    }


def cross_validate(experiment: Experiment, corpus: Corpus, output_dir: Path | None = None) -> dict:
    """Runs every requested fold not finished yet (a rerun continues only if the settings match), then writes
    results, plots and the model card; returns the results."""
    training = experiment.training
    output_dir = Path(output_dir or training.output_dir)
    barrier = training.distributed_state.wait_for_everyone
    folds = speaker_folds(corpus.dataset, experiment.data.protocol, experiment.data.fold_numbers())
    hub_fold = experiment.run.hub_fold
    if hub_fold is not None and hub_fold not in [fold.spec.fold for fold in folds]:
        raise ValueError(f"--hub_fold {hub_fold} is not among the folds this run trains.")
    # Only now, with the arguments, the data and the folds checked, may --overwrite_output_dir delete anything.
    claim_output_dir(output_dir, experiment.run.overwrite_output_dir, training.should_save)
    barrier()
    if training.should_save:  # every fold of the protocol: the same file whichever folds a job runs
        save_folds(speaker_folds(corpus.dataset, experiment.data.protocol), output_dir / "folds.json")
    config = run_config(experiment, corpus)
    records = []
    for position, fold in enumerate(folds, start=1):
        fold_dir = output_dir / f"fold_{fold.spec.fold:02d}"
        logger.info(
            "Fold %d/%d: %s fold %d, test speaker(s) %s", position, len(folds), fold.spec.protocol,
            fold.spec.fold, ", ".join(fold.spec.test),
        )  # fmt: skip
        components = fold_fingerprint(experiment, corpus, fold)
        record = read_json(fold_dir / RESULT_FILENAME, "Fold result")
        if record is not None:
            recorded = require_fingerprint(record, fold_dir / RESULT_FILENAME)
            check_fold_fingerprint(recorded, components, fold_dir / RESULT_FILENAME)
            logger.info("Fold %d already finished with these settings: kept", fold.spec.fold)
            records.append(record)
            continue
        state = read_json(fold_dir / FINGERPRINT_FILENAME, "Fold state")
        check_fold_fingerprint(state, components, fold_dir / FINGERPRINT_FILENAME)
        if training.should_save:
            if state is None and (fold_dir / "checkpoints").exists():
                logger.warning(
                    "Fold %d: checkpoints of unknown settings in %s: starting the fold over", fold.spec.fold, fold_dir
                )
                shutil.rmtree(fold_dir / "checkpoints")
            fold_dir.mkdir(parents=True, exist_ok=True)
            write_json(fold_dir / FINGERPRINT_FILENAME, components)
        barrier()
        started = time.time()
        record = run_fold(experiment, corpus, fold, fold_dir)
        record.update(
            wall_seconds=round(time.time() - started, 1),
            fingerprint={"hash": fingerprint_hash(components), "components": components},
            config=config,
        )
        if training.should_save:
            write_json(fold_dir / RESULT_FILENAME, record)
            shutil.rmtree(fold_dir / "checkpoints", ignore_errors=True)
        barrier()
        logger.info(
            "Fold %d/%d: WA %.2f %%, UA %.2f %% (test speaker %s, %.0f s)",
            position, len(folds), record["wa"], record["ua"], record["test_speaker"], record["wall_seconds"],
        )  # fmt: skip
        records.append(record)
    return summarize(experiment, records, config, output_dir)


def summarize(experiment: Experiment, records: list[dict], config: dict, output_dir: Path) -> dict:
    """Writes results.json/.md, the confusion plot and the model card (main process); pushes if asked."""
    training = experiment.training
    results = build_results(records, config, provenance())
    if not training.should_save:
        return results
    write_results(results, output_dir)
    hub_fold = experiment.run.hub_fold or max(records, key=lambda f: f["validation_ua"] or 0)["fold"]
    chosen = next((f for f in records if f["fold"] == hub_fold), None)
    if chosen is None:  # --gather with a fold that is not in the folder
        raise ValueError(f"--hub_fold {hub_fold} is not among the folds {[f['fold'] for f in records]}.")
    repo_id = training.hub_model_id or f"emodistill-{output_dir.name}"
    card = model_card(results, chosen, repo_id)
    card.save(output_dir / "README.md")
    model_dir = output_dir / f"fold_{hub_fold:02d}" / "model"
    card.save(model_dir / "README.md")
    if training.push_to_hub:
        if config["corpus"] != IEMOCAP_NAME:
            logger.warning("Publishing a student trained on the %s, not IEMOCAP: its card says so.", config["corpus"])
        url = push_fold_to_hub(model_dir, repo_id, training.hub_token, training.hub_private_repo, hub_fold)
        logger.info("Pushed fold %d's student to %s", hub_fold, url)
    return results


def gather(experiment: Experiment) -> dict:
    """`--gather`: the summary of the finished folds in the output folder, without training anything."""
    output_dir = Path(experiment.training.output_dir)
    records = gather_fold_results(output_dir)
    logger.info("Gathered folds %s from %s", [r["fold"] for r in records], output_dir)
    return summarize(experiment, records, records[0]["config"], output_dir)


def tau_sweep(experiment: Experiment, corpus: Corpus) -> dict:
    """Fig. 2 of the paper: one teacher removed, the other's temperature varied, a cross-validation per value; the
    temperature with the best mean *validation* UA is marked (test UA is shown, never used to choose)."""
    teacher, taus = experiment.run.tau_sweep_values()
    removed = "linguistic" if teacher == "prosodic" else "prosodic"
    sweep_dir = Path(experiment.training.output_dir)
    claim_output_dir(sweep_dir, experiment.run.overwrite_output_dir, experiment.training.should_save)
    experiment.training.distributed_state.wait_for_everyone()
    points = []
    for tau in taus:
        variant = experiment.with_training(**{f"tau_{teacher}": tau, "ablation": f"no_{removed}_teacher"})
        results = cross_validate(variant, corpus, sweep_dir / f"tau_{teacher}_{tau:g}")
        points.append(
            {"tau": tau, **results["mean"], "std": results["std"], "validation_ua": mean_validation_ua(results)}
        )
    chosen = max(points, key=lambda p: p["validation_ua"])["tau"]
    sweep = {"teacher": teacher, "removed": removed, "chosen_by_validation": chosen, "points": points}
    if experiment.training.should_save:
        write_tau_sweep(sweep, sweep_dir)
    return sweep


def ablation_table(experiment: Experiment, corpus: Corpus) -> dict:
    """Table 2 of the paper: every ablation row (same student, teachers, folds), for each seed; then the table with
    mean +- std over seeds, per-fold wins against the CE-only row and a paired test across folds."""
    seeds = experiment.run.seed_values()
    root = Path(experiment.training.output_dir)
    claim_output_dir(root, experiment.run.overwrite_output_dir, experiment.training.should_save)
    experiment.training.distributed_state.wait_for_everyone()
    runs = {}
    for seed in seeds:
        for ablation in ABLATIONS:
            variant = experiment.with_training(seed=seed, ablation=ablation)
            logger.info("Ablation table: %s, seed %d", ablation, seed)
            runs[(ablation, seed)] = cross_validate(variant, corpus, root / f"seed_{seed}" / ablation)
    table = {"seeds": seeds, "runs": {f"{a}/seed_{s}": r for (a, s), r in runs.items()}}
    if experiment.training.should_save:
        write_ablation_table(table, root)
    return table
