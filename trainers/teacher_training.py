"""Per-fold teacher training, and the cache of teacher outputs that makes the student's training teacher-free.

For each fold and teacher: train on the fold's training speakers (early stopping on its validation speakers), then
write the logits and embeddings of every training and validation utterance to a cache keyed by everything that
determines them (teacher settings, fold membership, the data). A second run with the same key loads the outputs and
runs no teacher at all. The test speakers never reach a teacher's training: `check_no_leakage` enforces it.
"""

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader

from emodistill.data_scripts.egemaps import egemaps_statistics
from emodistill.data_scripts.folds import SPLITS

from .collator import pad_descriptors
from .metrics import ser_scores
from .teachers import (
    DEFAULT_LINGUISTIC_BACKBONE,
    LinguisticTeacher,
    ProsodicResNetTeacher,
    ProsodicTeacherConfig,
)

logger = logging.getLogger(__name__)

TEACHERS = ("linguistic", "prosodic")
CACHE_VERSION = 1  # bump when what a cached teacher computes changes


@dataclass
class TeacherSettings:
    """Everything that determines a trained teacher, hence part of its cache key."""

    linguistic_backbone: str = DEFAULT_LINGUISTIC_BACKBONE
    linguistic_epochs: int = 2
    linguistic_learning_rate: float = 5e-5
    linguistic_batch_size: int = 16
    prosodic_channels: tuple[int, ...] = (8, 16, 32, 64)
    prosodic_embedding_dim: int = 128
    prosodic_epochs: int = 12
    prosodic_learning_rate: float = 1e-3
    prosodic_batch_size: int = 16
    patience: int = 3
    seed: int = 0


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


def _inputs_of(name: str, split: Dataset) -> list:
    """What the teacher reads from a split: transcripts, or eGeMAPS descriptor arrays."""
    if name == "linguistic":
        return list(split["text"])
    return list(split.with_format("numpy")["egemaps"])


def _relevant_settings(name: str, settings: TeacherSettings) -> dict:
    """The settings that determine the `name` teacher (its own and the shared ones)."""
    return {k: v for k, v in asdict(settings).items() if k.startswith(name) or k in ("patience", "seed")}


def teacher_cache_key(
    name: str, settings: TeacherSettings, splits: dict[str, Dataset], inputs: dict[str, list]
) -> str:
    """Hash of the teacher's settings and every split's ids, labels and inputs (`inputs[split]`, see `_inputs_of`)."""
    parts = [CACHE_VERSION, name, _relevant_settings(name, settings)]
    for split_name in SPLITS:
        split = splits[split_name]
        parts += [split_name, list(split["id"]), list(split["label"])]
        parts += [x if isinstance(x, str) else np.asarray(x, dtype=np.float32) for x in inputs[split_name]]
    return _content_hash(*parts)[:20]


def _batches(
    name: str, inputs: list, labels: list, batch_size: int, tokenizer, shuffle: bool, seed: int
) -> DataLoader:

    def collate(indices):
        if name == "linguistic":
            batch = dict(
                tokenizer(
                    [inputs[i] for i in indices], padding=True, truncation=True, max_length=128, return_tensors="pt"
                )
            )
        else:
            batch = pad_descriptors([inputs[i] for i in indices])
        batch["labels"] = torch.tensor([labels[i] for i in indices])
        return batch

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        range(len(labels)), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator
    )


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """Runs a teacher over a loader in eval mode: logits `(N, C)` and embeddings `(N, D)`."""
    model.eval()
    logits, embeddings = [], []
    for batch in loader:
        batch.pop("labels")
        output = model(**batch)
        logits.append(output.logits.float().numpy())
        embeddings.append(output.embedding.float().numpy())
    return np.concatenate(logits), np.concatenate(embeddings)


def fit(
    model: torch.nn.Module,
    train_loader: DataLoader,
    validation_loader: DataLoader,
    validation_labels: np.ndarray,
    *,
    epochs: int,
    learning_rate: float,
    patience: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> dict:
    """Cross-entropy training with AdamW; keeps the epoch with the best validation UA (early stopping)."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.01
    )
    best = {"ua": -1.0, "epoch": 0, "state": None}
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in train_loader:
            loss = model(**batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        validation_logits, _ = predict(model, validation_loader)
        ua = ser_scores(validation_logits.argmax(-1), validation_labels, validation_logits.shape[-1])["ua"]
        history.append({"epoch": epoch, "validation_ua": ua})
        if on_epoch is not None:
            on_epoch(epoch, ua)
        if ua > best["ua"]:
            best = {"ua": ua, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif epoch - best["epoch"] >= patience:
            break
    model.load_state_dict(best["state"])
    model.eval()
    return {"best_epoch": best["epoch"], "validation_ua": best["ua"], "history": history}


def _build(name: str, settings: TeacherSettings, train: Dataset, num_labels: int):
    """A fresh teacher (and its tokenizer) with the training split's eGeMAPS normalisation."""
    torch.manual_seed(settings.seed)
    if name == "linguistic":
        model = LinguisticTeacher.from_backbone(settings.linguistic_backbone, num_labels, seed=settings.seed)
        return model, LinguisticTeacher.tokenizer(settings.linguistic_backbone)
    config = ProsodicTeacherConfig(
        num_labels=num_labels, channels=settings.prosodic_channels, embedding_dim=settings.prosodic_embedding_dim
    )
    model = ProsodicResNetTeacher(config)
    statistics = egemaps_statistics(train)
    model.set_normalization(statistics.mean, statistics.std)
    return model, None


def train_teacher(
    name: str,
    splits: dict[str, Dataset],
    settings: TeacherSettings,
    cache_dir: str | Path,
    num_labels: int,
) -> TeacherResult:
    """
    Returns the fold's `name` teacher outputs, training the teacher only if they are not cached.

    Args:
        splits: the fold's `train`, `validation` and `test` splits (columns `id`, `label`, `speaker`, and `text` or
            `egemaps`). Training uses `train`, early stopping `validation`; `test` is only scored (the paper's
            "w/o f_S" rows) and never cached as a training signal.
    """
    if name not in TEACHERS:
        raise ValueError(f"Unknown teacher {name!r}; expected one of {TEACHERS}.")
    test_speakers = set(splits["test"]["speaker"])
    check_no_leakage(set(splits["train"]["speaker"]) | set(splits["validation"]["speaker"]), test_speakers)
    # Read once: the cache key, training and prediction all use the same inputs (eGeMAPS arrays can be large).
    inputs = {split: _inputs_of(name, splits[split]) for split in SPLITS}
    directory = Path(cache_dir) / "teachers" / name / teacher_cache_key(name, settings, splits, inputs)
    if (directory / "meta.json").exists():
        logger.info("%s teacher: cached outputs found in %s, no teacher runs", name, directory)
        return _load_result(name, directory)

    model, tokenizer = _build(name, settings, splits["train"], num_labels)
    batch_size = getattr(settings, f"{name}_batch_size")

    labels = {split: list(splits[split]["label"]) for split in SPLITS}

    def loader(split, shuffle=False):
        return _batches(name, inputs[split], labels[split], batch_size, tokenizer, shuffle, settings.seed)

    training = fit(
        model,
        loader("train", shuffle=True),
        loader("validation"),
        np.asarray(labels["validation"]),
        epochs=getattr(settings, f"{name}_epochs"),
        learning_rate=getattr(settings, f"{name}_learning_rate"),
        patience=settings.patience,
        on_epoch=lambda epoch, ua: logger.info("%s teacher epoch %d: validation UA %.3f", name, epoch, ua),
    )
    outputs = {split: predict(model, loader(split)) for split in SPLITS}
    test_logits = outputs["test"][0]
    test_scores = ser_scores(test_logits.argmax(-1), np.asarray(labels["test"]), num_labels)
    meta = {
        "teacher": name,
        "settings": _relevant_settings(name, settings),
        "trained_on_speakers": sorted(set(splits["train"]["speaker"])),
        "early_stopping_speakers": sorted(set(splits["validation"]["speaker"])),
        "test_speakers": sorted(test_speakers),
        "training": training,
        "test": {"n": len(test_logits), **{k: test_scores[k] for k in ("wa", "ua", "macro_f1")}},
        "ids": {split: list(splits[split]["id"]) for split in ("train", "validation")},
    }
    directory.mkdir(parents=True, exist_ok=True)
    if name == "linguistic":
        model.save(directory / "model", tokenizer)
    else:
        model.save_pretrained(directory / "model")
    arrays = {}
    for split in ("train", "validation"):
        arrays[f"{split}_logits"], arrays[f"{split}_embedding"] = outputs[split]
    save_file(arrays, directory / "outputs.safetensors")
    # meta.json is written last: its presence marks a complete cache entry.
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))
    return _load_result(name, directory)


def _load_result(name: str, directory: Path) -> TeacherResult:
    meta = json.loads((directory / "meta.json").read_text())
    arrays = load_file(directory / "outputs.safetensors")
    logits, embeddings = {}, {}
    for split, ids in meta["ids"].items():
        logits.update(zip(ids, arrays[f"{split}_logits"]))
        embeddings.update(zip(ids, arrays[f"{split}_embedding"]))
    meta["cache_dir"] = str(directory)
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
