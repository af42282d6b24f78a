"""Shared by the tests: tiny models and batches built in code (transformers' `HubertModelTester` sizes), and the
scaffolding of the subprocess tests (a hub user who cannot import the project, a two-process CPU launch)."""

import sys
import textwrap

import numpy as np
import torch
from torch import nn
from transformers import Wav2Vec2FeatureExtractor

from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification

LABELS = ["neutral", "angry", "sad", "happy"]
# The main job on the tiny generated corpus, one epoch of everything: what the end-to-end tests run.
TINY_JOB_ARGS = [
    "--synthetic_utterances_per_speaker", "4",
    "--num_train_epochs", "1",
    "--linguistic_teacher_epochs", "1",
    "--prosodic_teacher_epochs", "1",
    "--preprocessing_num_workers", "1",
]  # fmt: skip
LINGUISTIC_DIM, PROSODIC_DIM = 12, 8


def tiny_student_config(**overrides) -> EmoDistillConfig:
    kwargs = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(32, 32, 32),
        conv_stride=(4, 4, 4),
        conv_kernel=(8, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        classifier_proj_size=16,
        linguistic_embedding_dim=LINGUISTIC_DIM,
        prosodic_embedding_dim=PROSODIC_DIM,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        # Deterministic forward passes, so two runs can be compared exactly.
        hidden_dropout=0.0,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=False,
    )
    kwargs.update(overrides)
    return EmoDistillConfig(**kwargs)


def tiny_student(seed: int = 0, **overrides) -> EmoDistillForAudioClassification:
    torch.manual_seed(seed)
    return EmoDistillForAudioClassification(tiny_student_config(**overrides))


def feature_extractor() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def toy_rows(n: int = 8, seed: int = 0, with_cache: bool = True) -> list[dict]:
    """Rows as the main job's dataset holds them: waveform, label, transcript, descriptors and cached teacher outputs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {
            "input_values": rng.standard_normal(int(rng.integers(3000, 6000))).astype(np.float32),
            "label": i % len(LABELS),
            "text": ["fine thanks", "this is outrageous", "i miss her so much", "what wonderful news"][i % 4],
            "egemaps": rng.standard_normal((int(rng.integers(20, 40)), 25)).astype(np.float32),
        }
        if with_cache:
            row |= {
                "linguistic_logits": rng.standard_normal(len(LABELS)).astype(np.float32),
                "linguistic_embedding": rng.standard_normal(LINGUISTIC_DIM).astype(np.float32),
                "prosodic_logits": rng.standard_normal(len(LABELS)).astype(np.float32),
                "prosodic_embedding": rng.standard_normal(PROSODIC_DIM).astype(np.float32),
            }
        rows.append(row)
    return rows


class TeacherOutput:
    def __init__(self, logits, embedding):
        self.logits, self.embedding = logits, embedding


class ToyProsodicTeacher(nn.Module):
    """Mean-pools `(B, T, 25)` descriptors; enough to exercise the on-the-fly teacher path."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(25, PROSODIC_DIM)
        self.head = nn.Linear(PROSODIC_DIM, len(LABELS))

    def forward(self, features, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        embedding = self.embed((features * mask).sum(1) / mask.sum(1))
        return TeacherOutput(self.head(embedding), embedding)


class ToyLinguisticTeacher(nn.Module):
    def __init__(self, vocab_size: int = 128):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, LINGUISTIC_DIM)
        self.head = nn.Linear(LINGUISTIC_DIM, len(LABELS))

    def forward(self, input_ids, attention_mask, **unused):
        embedding = self.embed(input_ids % self.embed.num_embeddings, per_sample_weights=None)
        return TeacherOutput(self.head(embedding), embedding)


# Prelude of a hub user's script: transformers and torch are there, this project is not, and importing it fails.
BLOCK_PROJECT_IMPORTS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoProject(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "emodistill" or name.startswith("emodistill."):
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, NoProject())
    """
)


def two_cpu_processes_command(script: str, *script_args: str, port: int) -> list[str]:
    """`accelerate launch --multi_gpu --num_processes 2 SCRIPT ...`: one gloo group only if the script's
    TrainingArguments get `use_cpu=True` (`accelerate launch --cpu --num_processes 2` would start one process)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        script, *script_args,
    ]  # fmt: skip
