"""Pretraining the student's HuBERT on unlabelled synthetic speech, offline: what `facebook/hubert-*` are for the paper.

HuBERT's recipe at its first iteration (Hsu et al., 2021, and fairseq's `examples/hubert`): cluster MFCC frames
(13 coefficients + deltas + delta-deltas, 100 frames/s, taken at the model's 50 frames/s) with k-means, then train the
model to predict the cluster ("unit") of every *masked* frame from the unmasked context (`--objective masked_units`:
cosine-similarity logits against learnt unit embeddings, temperature 0.1, cross-entropy over masked frames only).
`--objective phoneme_ctc` instead trains on espeak-ng's own phoneme transcription with CTC, and
`--objective masked_units+phoneme_ctc` sums both losses over the same masked input. The corpus
(`data_scripts/unlabelled_speech.py`) carries no emotion label, and shares no word with the emotion corpus.

The result is a plain `HubertModel` checkpoint folder, laid out like `facebook/hubert-base-ls960` (`config.json` with
`model_type: hubert`, `model.safetensors`, `preprocessor_config.json`), which the student loads through
`--student_model_name_or_path` exactly as it loads a hub checkpoint:

    emodistill-pretrain-student --output_dir checkpoints/hubert-synthetic --objective phoneme_ctc
    emodistill-pretrain-student --output_dir outputs/quick-check --quick   # the recipe in seconds
"""

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from transformers import (
    HfArgumentParser,
    HubertConfig,
    HubertModel,
    Trainer,
    TrainingArguments,
    Wav2Vec2FeatureExtractor,
    set_seed,
)
from transformers.modeling_outputs import ModelOutput
from transformers.models.hubert.modeling_hubert import HubertPreTrainedModel, _compute_mask_indices

from emodistill.data_scripts.audio import SAMPLING_RATE
from emodistill.data_scripts.generated_folder import DEFAULT_CACHE_DIR, PRETRAINING_CORPORA, settings_folder
from emodistill.data_scripts.unlabelled_speech import generate_unlabelled_speech, read_unlabelled_manifest

logger = logging.getLogger(__name__)

OBJECTIVES = ("masked_units", "phoneme_ctc", "masked_units+phoneme_ctc")
# The student's architecture: HuBERT's layout (conv encoder with a 320-sample hop, i.e. 50 frames/s, then a
# Transformer), scaled to pretrain and fine-tune on 2 CPU cores: 3.6 M parameters, 14 MB in float32.
STUDENT_ARCHITECTURE = dict(
    conv_dim=(64, 128, 128, 128),
    conv_stride=(10, 4, 4, 2),
    conv_kernel=(20, 8, 8, 4),
    feat_extract_norm="layer",
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    num_conv_pos_embeddings=32,
    num_conv_pos_embedding_groups=16,
    layerdrop=0.0,
)
FRAME_HOP_SAMPLES = 320  # `prod(conv_stride)`: one model frame per 20 ms
MFCC_SHIFT_SAMPLES = 160  # Kaldi's 10 ms frame shift: two MFCC frames per model frame


@dataclass
class PretrainingArguments:
    """What is pretrained, on what, and for how long (the optimiser's settings are `TrainingArguments`)."""

    objective: str = field(
        default="phoneme_ctc", metadata={"help": "What the model predicts.", "choices": list(OBJECTIVES)}
    )
    corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the unlabelled corpus is generated (reused when its settings match). Default: the cache "
            "($EMODISTILL_CACHE or ~/.cache/emodistill), a folder per corpus size and seed."
        },
    )
    num_utterances: int = field(default=4000, metadata={"help": "Size of the unlabelled corpus."})
    corpus_seed: int = field(default=0, metadata={"help": "Seed of the unlabelled corpus."})
    num_units: int = field(default=100, metadata={"help": "k-means clusters of MFCC frames (HuBERT: 100)."})
    kmeans_frames: int = field(default=100_000, metadata={"help": "MFCC frames sampled to fit k-means."})
    mask_prob: float = field(default=0.65, metadata={"help": "Share of frames starting a masked span."})
    mask_length: int = field(default=10, metadata={"help": "Frames per masked span (HuBERT: 10)."})
    quick: bool = field(default=False, metadata={"help": "A tiny model on 40 utterances: checks the recipe."})


class HubertPretrainingConfig(HubertConfig):
    """A `HubertConfig` plus the pretraining heads' sizes (`num_units`, `num_phonemes`; 0 leaves a head out)."""

    model_type = "emodistill_hubert_pretraining"

    def __init__(self, num_units: int = 0, num_phonemes: int = 0, unit_embedding_dim: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units
        self.num_phonemes = num_phonemes
        self.unit_embedding_dim = unit_embedding_dim


@dataclass
class PretrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    unit_loss: torch.Tensor | None = None
    ctc_loss: torch.Tensor | None = None


class HubertForPretraining(HubertPreTrainedModel):
    """
    HubertModel with HuBERT's masked-unit head and/or a phoneme CTC head; only `self.hubert` is kept afterwards.

    Masked units (fairseq's `HubertModel.compute_pred`): logits `(frames, num_units)` are the cosine similarities of
    the projected frames and the unit embeddings divided by 0.1; cross-entropy over the masked frames only.
    """

    config_class = HubertPretrainingConfig

    def __init__(self, config: HubertPretrainingConfig):
        super().__init__(config)
        self.hubert = HubertModel(config)
        if config.num_units:
            self.final_proj = nn.Linear(config.hidden_size, config.unit_embedding_dim)
            self.unit_embeddings = nn.Parameter(torch.empty(config.num_units, config.unit_embedding_dim))
        if config.num_phonemes:
            self.phoneme_head = nn.Linear(config.hidden_size, config.num_phonemes + 1)  # + the CTC blank, id 0
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self and self.config.num_units:
            nn.init.uniform_(self.unit_embeddings)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        unit_labels: torch.Tensor | None = None,
        phoneme_labels: torch.Tensor | None = None,
    ) -> PretrainingOutput:
        """
        Args:
            input_values: `(B, samples)`; attention_mask: `(B, samples)`.
            mask_time_indices: `(B, frames)` bool, the frames replaced by the mask embedding.
            unit_labels: `(B, frames)` unit ids, -100 on padding; phoneme_labels: `(B, L)` ids >= 1, -100 padding.
        """
        hidden = self.hubert(input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices)[0]
        zero = hidden.new_zeros(())
        unit_loss = ctc_loss = None
        if unit_labels is not None:
            frames = min(hidden.shape[1], unit_labels.shape[1])
            selected = mask_time_indices[:, :frames] & (unit_labels[:, :frames] >= 0)
            projected = F.normalize(self.final_proj(hidden[:, :frames][selected]).float(), dim=-1)
            logits = projected @ F.normalize(self.unit_embeddings.float(), dim=-1).T / 0.1
            unit_loss = F.cross_entropy(logits, unit_labels[:, :frames][selected])
        if phoneme_labels is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_values, dtype=torch.long)
            frame_lengths = self._get_feat_extract_output_lengths(attention_mask.sum(-1)).long()
            log_probs = F.log_softmax(self.phoneme_head(hidden).float(), dim=-1).transpose(0, 1)
            targets = phoneme_labels[phoneme_labels >= 0]
            target_lengths = (phoneme_labels >= 0).sum(-1)
            ctc_loss = F.ctc_loss(
                log_probs, targets, frame_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
            )
        loss = sum((x for x in (unit_loss, ctc_loss) if x is not None), zero)
        return PretrainingOutput(loss=loss, unit_loss=unit_loss, ctc_loss=ctc_loss)


def mfcc_frames(waveform: np.ndarray) -> torch.Tensor:
    """HuBERT's iteration-1 features of a 16 kHz waveform: `(frames, 39)` MFCC + deltas, one row per 20 ms frame."""
    mfcc = torchaudio.compliance.kaldi.mfcc(
        torch.from_numpy(np.asarray(waveform, dtype=np.float32))[None],
        sample_frequency=SAMPLING_RATE,
        use_energy=False,
    )  # (frames at 100 Hz, 13)
    deltas = torchaudio.functional.compute_deltas(mfcc.T)
    features = torch.cat([mfcc.T, deltas, torchaudio.functional.compute_deltas(deltas)]).T
    return features[:: FRAME_HOP_SAMPLES // MFCC_SHIFT_SAMPLES]


def kmeans(features: torch.Tensor, num_clusters: int, *, iterations: int = 50, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding: centroids `(num_clusters, D)` of `features` `(N, D)`."""
    generator = torch.Generator().manual_seed(seed)
    features = features.float()
    centroids = features[torch.randint(len(features), (1,), generator=generator)]
    for _ in range(1, num_clusters):  # k-means++: next centroid with probability ~ squared distance
        distances = torch.cdist(features, centroids).min(dim=1).values ** 2
        centroids = torch.cat([centroids, features[torch.multinomial(distances, 1, generator=generator)]])
    for _ in range(iterations):
        assignment = torch.cdist(features, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, features)
        counts = torch.bincount(assignment, minlength=num_clusters).unsqueeze(1)
        # An empty cluster keeps its centroid instead of becoming NaN.
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


def assign_units(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of every frame: `(frames,)` unit ids."""
    return torch.cdist(features.float(), centroids).argmin(dim=1)


class PretrainingDataset(torch.utils.data.Dataset):
    """Rows of `input_values` (float32 waveform) with `unit_labels` and/or `phoneme_labels` when given."""

    def __init__(self, waveforms: list[np.ndarray], units: list | None, phonemes: list | None):
        self.waveforms, self.units, self.phonemes = waveforms, units, phonemes

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, index: int) -> dict:
        row = {"input_values": self.waveforms[index]}
        if self.units is not None:
            row["unit_labels"] = self.units[index]
        if self.phonemes is not None:
            row["phoneme_labels"] = self.phonemes[index]
        return row


@dataclass
class PretrainingCollator:
    """Pads waveforms and labels (-100); draws HuBERT's span masks when units are predicted."""

    feature_extractor: Wav2Vec2FeatureExtractor
    model: HubertForPretraining
    mask_prob: float
    mask_length: int

    def __call__(self, rows: Sequence[dict]) -> dict:
        batch = dict(
            self.feature_extractor(
                [row["input_values"] for row in rows],
                sampling_rate=SAMPLING_RATE,
                padding=True,
                return_attention_mask=True,
                return_tensors="pt",
            )
        )
        frames = int(self.model._get_feat_extract_output_lengths(batch["input_values"].shape[1]))
        if "unit_labels" in rows[0]:
            units = torch.full((len(rows), frames), -100, dtype=torch.long)
            for i, row in enumerate(rows):
                n = min(frames, len(row["unit_labels"]))
                units[i, :n] = torch.as_tensor(row["unit_labels"][:n])
            batch["unit_labels"] = units
            frame_mask = self.model._get_feature_vector_attention_mask(frames, batch["attention_mask"])
            # The model's frames past an utterance's end are padding: never masked, never scored.
            mask = _compute_mask_indices(
                (len(rows), frames), self.mask_prob, self.mask_length, attention_mask=frame_mask, min_masks=2
            )
            batch["mask_time_indices"] = torch.from_numpy(mask) & frame_mask.bool()
        if "phoneme_labels" in rows[0]:
            length = max(len(row["phoneme_labels"]) for row in rows)
            labels = torch.full((len(rows), length), -100, dtype=torch.long)
            for i, row in enumerate(rows):
                labels[i, : len(row["phoneme_labels"])] = torch.as_tensor(row["phoneme_labels"])
            batch["phoneme_labels"] = labels
        return batch


class PretrainingTrainer(Trainer):
    """Logs each objective's loss beside the total."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training and self.state.global_step % self.args.logging_steps == 0:
            parts = {
                k: round(v.item(), 4) for k in ("unit_loss", "ctc_loss") if (v := getattr(outputs, k)) is not None
            }
            if parts:
                logger.info("step %d: %s", self.state.global_step, parts)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def student_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """The pretrained student's feature extractor: 16 kHz, per-utterance normalisation, attention masks (layer norm)."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def load_corpus(args: PretrainingArguments) -> tuple[list[np.ndarray], list[list[str]], dict]:
    """The unlabelled corpus's waveforms and phoneme sequences (generated on first use), and its config."""
    num_utterances = 40 if args.quick else args.num_utterances
    settings = {"num_utterances": num_utterances, "seed": args.corpus_seed}
    corpus_dir = args.corpus_dir or settings_folder(DEFAULT_CACHE_DIR, PRETRAINING_CORPORA, settings)
    root = generate_unlabelled_speech(corpus_dir, **settings)
    rows = read_unlabelled_manifest(root)
    waveforms = [sf.read(root / row["file"], dtype="float32")[0] for row in rows]
    return waveforms, [row["phonemes"] for row in rows], json.loads((root / "config.json").read_text())


def fit_units(waveforms: list[np.ndarray], args: PretrainingArguments, seed: int) -> list[np.ndarray]:
    """k-means units of every utterance's MFCC frames (HuBERT's iteration-1 targets)."""
    features = [mfcc_frames(w) for w in waveforms]
    stacked = torch.cat(features)
    generator = torch.Generator().manual_seed(seed)
    sample = stacked[torch.randperm(len(stacked), generator=generator)[: args.kmeans_frames]]
    num_units = min(args.num_units, len(sample))
    centroids = kmeans(sample, num_units, seed=seed)
    return [assign_units(f, centroids).numpy() for f in features]


def build_pretraining_model(args: PretrainingArguments, num_phonemes: int) -> HubertForPretraining:
    architecture = dict(STUDENT_ARCHITECTURE)
    if args.quick:
        architecture.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
        architecture.update(conv_dim=(16, 16, 16, 16), num_conv_pos_embedding_groups=4)
    config = HubertPretrainingConfig(
        **architecture,
        num_units=args.num_units if "masked_units" in args.objective else 0,
        num_phonemes=num_phonemes if "phoneme_ctc" in args.objective else 0,
        # Fine-tuning keeps HuBERT's SpecAugment defaults; pretraining with units draws its own masks.
        mask_time_prob=0.05,
    )
    return HubertForPretraining(config)


def save_student_checkpoint(
    model: HubertForPretraining, output_dir: str | os.PathLike, card: str | None = None
) -> Path:
    """Writes `model.hubert` as a plain `HubertModel` folder (hub layout), with its feature extractor and card."""
    output_dir = Path(output_dir)
    values = model.config.to_dict()
    hubert_config = HubertConfig(
        **{k: v for k, v in values.items() if k not in ("num_units", "num_phonemes", "unit_embedding_dim")}
    )
    hubert_config.architectures = ["HubertModel"]
    hubert = HubertModel(hubert_config)
    hubert.load_state_dict(model.hubert.state_dict())
    hubert.save_pretrained(output_dir)
    student_feature_extractor().save_pretrained(output_dir)
    if card is not None:
        (output_dir / "README.md").write_text(card)
    return output_dir


def pretrain(args: PretrainingArguments, training_args: TrainingArguments) -> dict:
    """Runs the recipe and writes the checkpoint to `training_args.output_dir`; returns a summary."""
    if args.objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective {args.objective!r}; choose one of {OBJECTIVES}.")
    started = time.perf_counter()
    set_seed(training_args.seed)
    waveforms, phoneme_strings, corpus_config = load_corpus(args)
    inventory = sorted({p for sequence in phoneme_strings for p in sequence})
    phoneme_ids = {p: i + 1 for i, p in enumerate(inventory)}  # 0 is the CTC blank
    units = fit_units(waveforms, args, training_args.seed) if "masked_units" in args.objective else None
    phonemes = (
        [np.array([phoneme_ids[p] for p in s]) for s in phoneme_strings] if "phoneme_ctc" in args.objective else None
    )
    set_seed(training_args.seed)
    model = build_pretraining_model(args, len(inventory))
    collator = PretrainingCollator(
        student_feature_extractor(),
        model,
        mask_prob=args.mask_prob if units is not None else 0.0,
        mask_length=args.mask_length,
    )
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=PretrainingDataset(waveforms, units, phonemes),
        data_collator=collator,
        processing_class=collator.feature_extractor,  # names `input_values` for the length-grouped sampler
    )
    result = trainer.train()
    losses = [log for log in trainer.state.log_history if "loss" in log]
    summary = {
        "objective": args.objective,
        "corpus": corpus_config,
        "hours_of_speech": round(sum(len(w) for w in waveforms) / SAMPLING_RATE / 3600, 3),
        "phoneme_inventory": len(inventory),
        "parameters": sum(p.numel() for p in model.hubert.parameters()),
        # Not where the corpus was written: a machine's path is no part of the recipe.
        "arguments": {k: v for k, v in asdict(args).items() if k != "corpus_dir"},
        "epochs": training_args.num_train_epochs,
        "learning_rate": training_args.learning_rate,
        "batch_size": training_args.per_device_train_batch_size,
        "seed": training_args.seed,
        "final_train_loss": losses[-1]["loss"] if losses else None,
        "train_loss": round(result.training_loss, 4),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    save_student_checkpoint(model, training_args.output_dir, card=_card(summary))
    (Path(training_args.output_dir) / "pretraining.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _card(summary: dict) -> str:
    return f"""---
library_name: transformers
tags: [hubert, speech, synthetic-speech, emodistill]
license: apache-2.0
---
# HuBERT pretrained on synthetic speech (EmoDistill's offline student)

A `HubertModel` ({summary["parameters"] / 1e6:.1f} M parameters) pretrained by `emodistill-pretrain-student` on
{summary["hours_of_speech"]} h of unlabelled espeak-ng speech (random word sequences, {summary["corpus"]["num_utterances"]}
utterances, 166 voices; no word in common with EmoDistill's synthetic emotion corpus, no emotion label).
Objective: `{summary["objective"]}` (see `trainers/pretraining.py`). It stands in for `facebook/hubert-base-ls960`
where no pretrained speech model can be downloaded; it knows nothing of real speech.

Recipe: {summary["epochs"]} epochs, AdamW at {summary["learning_rate"]}, batch {summary["batch_size"]}, seed
{summary["seed"]}; final training loss {summary["final_train_loss"]}; {summary["wall_seconds"]:.0f} s on
{summary["torch_threads"]} CPU threads. Details: `pretraining.json`.
"""


# Defaults of the shipped checkpoint's recipe; any TrainingArguments flag overrides them.
DEFAULT_TRAINING_ARGS = dict(
    learning_rate=5e-4,
    warmup_steps=0.08,
    weight_decay=0.01,
    max_grad_norm=10.0,
    num_train_epochs=20,
    per_device_train_batch_size=16,
    train_sampling_strategy="group_by_length",
    save_strategy="no",
    logging_steps=50,
    report_to="none",
    seed=0,
    dataloader_num_workers=0,
    dataloader_pin_memory=torch.cuda.is_available(),  # pinning without a GPU only warns
)


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser((PretrainingArguments, TrainingArguments))
    parser.set_defaults(**DEFAULT_TRAINING_ARGS)
    parser.prog = "emodistill-pretrain-student"
    args, training_args = parser.parse_args_into_dataclasses(argv)
    if args.quick:
        training_args.num_train_epochs = min(training_args.num_train_epochs, 1)
        training_args.logging_steps = 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    summary = pretrain(args, training_args)
    print(json.dumps({k: summary[k] for k in ("objective", "train_loss", "wall_seconds")}))
    print(f"-> {training_args.output_dir}")


if __name__ == "__main__":
    main()
