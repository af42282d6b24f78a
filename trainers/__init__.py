"""Training side of EmoDistill: the loss, the trainer and its arguments, the collator, the teachers."""

from .arguments import EmoDistillTrainingArguments
from .collator import CACHED_TEACHER_COLUMNS, EmoDistillDataCollator
from .losses import EmoDistillLossOutput, embedding_kd_loss, emodistill_loss, logit_kd_loss
from .trainer import EmoDistillTrainer, freeze_model

__all__ = [
    "CACHED_TEACHER_COLUMNS",
    "EmoDistillDataCollator",
    "EmoDistillLossOutput",
    "EmoDistillTrainer",
    "EmoDistillTrainingArguments",
    "embedding_kd_loss",
    "emodistill_loss",
    "freeze_model",
    "logit_kd_loss",
]
