"""Batches for `EmoDistillTrainer`: padded audio with its attention mask, labels, and the teachers' signals."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, SequenceFeatureExtractor

from .teachers import MAX_TEXT_LENGTH

# Cached teacher outputs (computed once per fold) that ride in the dataset as columns, by batch key.
CACHED_TEACHER_COLUMNS = ("linguistic_logits", "linguistic_embedding", "prosodic_logits", "prosodic_embedding")


@dataclass
class EmoDistillDataCollator:
    """
    Turns dataset rows into a batch.

    Each row holds `input_values` (a 1-D 16 kHz waveform) and `label`; optionally the cached teacher columns of
    `CACHED_TEACHER_COLUMNS`, and, for teachers that run on the fly, `text` (tokenized for the linguistic teacher) and
    `egemaps` (`(frames, 25)` descriptors for the prosodic teacher).

    With `random_crop=True`, each row's waveform is cut to the row's `length` (in samples) at a random offset: the
    training split's `length` is its crop length (`student_split`), evaluation splits' rows keep their whole
    waveform (`length` equals it), so one collator serves both. Offsets come from NumPy's global generator, which
    `Trainer` seeds and checkpoints: with `dataloader_num_workers=0` (the default) a resumed run crops as the
    uninterrupted one would; workers draw from generators torch seeds afresh for each worker. (Cropping here rather
    than in a `Dataset.set_transform` lets the rows stay NumPy arrays: a transform receives Python lists, one
    Python float per sample.)

    The batch has `input_values` `(B, T)`, `attention_mask` `(B, T)` when the feature extractor asks for one (its
    `return_attention_mask`: group-norm checkpoints such as `facebook/hubert-base-ls960` must not get a mask, padding
    is then plain zeros, as transformers documents), `labels` `(B,)`, each cached column stacked
    to `(B, D)`, and `linguistic_teacher_inputs` / `prosodic_teacher_inputs` dicts of padded tensors when the rows
    carry text / descriptors and the collator was given a `tokenizer` / `include_prosodic_features=True`.
    """

    feature_extractor: SequenceFeatureExtractor
    tokenizer: PreTrainedTokenizerBase | None = None
    include_prosodic_features: bool = False
    max_text_length: int = MAX_TEXT_LENGTH
    random_crop: bool = False

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        audio = [np.asarray(f["input_values"], dtype=np.float32) for f in features]
        if self.random_crop:
            if "length" not in features[0]:
                raise KeyError(
                    "random_crop=True crops each row to its `length` column (samples), which the rows lack."
                )
            audio = [random_crop(waveform, int(f["length"])) for waveform, f in zip(audio, features)]
        batch = dict(
            self.feature_extractor(
                audio,
                sampling_rate=self.feature_extractor.sampling_rate,
                padding=True,
                return_attention_mask=self.feature_extractor.return_attention_mask,
                return_tensors="pt",
            )
        )
        if "label" in features[0]:
            batch["labels"] = torch.tensor([int(f["label"]) for f in features], dtype=torch.long)

        for column in CACHED_TEACHER_COLUMNS:
            if column in features[0]:
                batch[column] = torch.tensor(np.stack([np.asarray(f[column], dtype=np.float32) for f in features]))

        if self.tokenizer is not None:
            batch["linguistic_teacher_inputs"] = dict(
                self.tokenizer(
                    [f["text"] for f in features],
                    padding=True,
                    truncation=True,
                    max_length=self.max_text_length,
                    return_tensors="pt",
                )
            )
        if self.include_prosodic_features:
            batch["prosodic_teacher_inputs"] = pad_descriptors([f["egemaps"] for f in features])
        return batch


def random_crop(waveform: np.ndarray, max_samples: int) -> np.ndarray:
    """`waveform` `(T,)` cut to at most `max_samples` at an offset drawn from NumPy's global generator (no draw when
    it is not longer)."""
    if len(waveform) <= max_samples:
        return waveform
    start = np.random.randint(0, len(waveform) - max_samples + 1)
    return waveform[start : start + max_samples]


def evaluation_batch_size(feature_extractor: SequenceFeatureExtractor, requested: int) -> int:
    """The batch size a student is scored with: as requested when it gets an attention mask; 1 for a student without
    one (group norm), whose outputs padding would change."""
    return requested if feature_extractor.return_attention_mask else 1


def pad_descriptors(sequences: Sequence[Any]) -> dict[str, torch.Tensor]:
    """Pads `(frames_i, D)` descriptor sequences to `features` `(B, max_frames, D)` plus `attention_mask` `(B, max_frames)`."""
    arrays = [np.asarray(s, dtype=np.float32) for s in sequences]
    max_frames = max(a.shape[0] for a in arrays)
    features = np.zeros((len(arrays), max_frames, arrays[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(arrays), max_frames), dtype=np.int64)
    for i, a in enumerate(arrays):
        features[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = 1
    return {"features": torch.from_numpy(features), "attention_mask": torch.from_numpy(mask)}
