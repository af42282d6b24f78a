"""`EmoDistillTrainer`: a `transformers.Trainer` whose loss distils two frozen teachers into the audio student."""

import contextlib
from collections import defaultdict

import torch
from torch import nn
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import has_length
from transformers.utils import logging

from .arguments import EmoDistillTrainingArguments
from .losses import emodistill_loss
from .teachers import TEACHERS

logger = logging.get_logger("emodistill.trainer")


class EpochLogCallback(TrainerCallback):
    """One log line per evaluation: the latest training losses and the validation scores (in place of the Trainer's
    line per logging step, which a redirected log does not need)."""

    def __init__(self, name: str):
        self.name, self.train_logs = name, {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_logs = logs

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return
        losses = ", ".join(
            f"{k} {v:.3f}" for k, v in self.train_logs.items() if k in ("loss", "ce", "logits_kd", "embedding_kd")
        )
        scores = ", ".join(f"{k[5:].upper()} {v:.2f} %" for k, v in metrics.items() if k in ("eval_wa", "eval_ua"))
        logger.info(
            "%s, epoch %.0f/%.0f: train %s; validation %s",
            self.name,
            state.epoch or 0,
            args.num_train_epochs,
            losses or "-",
            scores,
        )


def quiet_trainer(trainer: Trainer, name: str) -> Trainer:
    """Without progress bars (a redirected log), one line per evaluation instead of the Trainer's printed dicts."""
    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(EpochLogCallback(name))
    return trainer


@contextlib.contextmanager
def without_autocast(model: nn.Module):
    """`model` as it was before `accelerate` wrapped its `forward` in the autocast of mixed precision (accelerate keeps
    the unwrapped method as `_original_forward`); the wrapper is put back on exit. Without mixed precision: no-op."""
    wrapped, original = model.__dict__.get("forward"), model.__dict__.get("_original_forward")
    if wrapped is None or original is None:
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapped


def freeze_model(model: nn.Module) -> nn.Module:
    """Puts a teacher in eval mode and stops its gradients (it is never updated)."""
    model.eval()
    model.requires_grad_(False)
    return model


class EmoDistillTrainer(Trainer):
    """
    Trains an `EmoDistillForAudioClassification` student with the EmoDistill loss (`trainers/losses.py`).

    Teacher signals come from one of two places, the same loss either way:

    * **cached** (the fast default): the batch carries `linguistic_logits`, `linguistic_embedding`,
      `prosodic_logits`, `prosodic_embedding`, computed once per fold; no teacher runs during training;
    * **on the fly**: frozen teacher modules are given to the trainer (`linguistic_teacher=`, `prosodic_teacher=`),
      and the batch carries their inputs (`linguistic_teacher_inputs`, `prosodic_teacher_inputs`, see
      `EmoDistillDataCollator`). A teacher's forward returns an object with `.logits` `(B, C)` and `.embedding`
      `(B, D)`; it runs in eval mode under `torch.no_grad()`, placed on the device by accelerate.

    Each loss term is logged on its own (`ce`, `logits_kd`, `embedding_kd`, and `eval_`-prefixed in evaluation).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: EmoDistillTrainingArguments | None = None,
        *,
        linguistic_teacher: nn.Module | None = None,
        prosodic_teacher: nn.Module | None = None,
        **kwargs,
    ):
        if args is None:
            args = EmoDistillTrainingArguments(output_dir="emodistill_output")
        if not isinstance(args, EmoDistillTrainingArguments):
            raise TypeError(f"`args` must be EmoDistillTrainingArguments, got {type(args).__name__}.")
        super().__init__(model=model, args=args, **kwargs)
        # The loss is a per-batch mean: let Trainer divide it by the accumulation steps, so gradient accumulation
        # gives the same scale as one large batch.
        self.loss_is_scaled_for_ga = False
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.teachers = {}
        for name, teacher in (("linguistic", linguistic_teacher), ("prosodic", prosodic_teacher)):
            if teacher is not None:
                self.teachers[name] = self.accelerator.prepare_model(freeze_model(teacher), evaluation_mode=True)

    def _get_eval_sampler(self, eval_dataset):
        """Evaluation and prediction in dataset order. (transformers 5 groups them by length too when
        `train_sampling_strategy="group_by_length"`: scores stay right, but the i-th prediction would no longer be
        the i-th utterance's.) Distributed, accelerate's sharding keeps the order."""
        if eval_dataset is None or not has_length(eval_dataset):
            return None
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation and prediction in float32 even when training runs under bf16 autocast: validation scores pick
        the epoch, and a fold's test scores and `predictions.csv` are what its saved model gives in
        `pipeline("audio-classification")`, which runs in float32."""
        with without_autocast(self.accelerator.unwrap_model(model)):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _teacher_signals(self, inputs: dict, teacher: str, mode: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One teacher's `(logits, embedding)` for this batch, from the cache columns or by running it; pops its keys."""
        teacher_inputs = inputs.pop(f"{teacher}_teacher_inputs", None)
        logits, embedding = inputs.pop(f"{teacher}_logits", None), inputs.pop(f"{teacher}_embedding", None)
        if teacher not in self.args.teachers_needed:  # switched off, or no live KD term reads it (alpha = beta = 0)
            return None
        if teacher in self.teachers and teacher_inputs is not None:
            with torch.no_grad():
                output = self.teachers[teacher](**teacher_inputs)
            return output.logits, output.embedding
        if logits is not None and embedding is not None:
            return logits, embedding
        if mode == "eval":  # the test split has no teacher outputs: evaluation reports what it can
            return None
        raise ValueError(
            f"The {teacher} teacher is enabled but the batch has neither cached `{teacher}_logits` / "
            f"`{teacher}_embedding` columns nor `{teacher}_teacher_inputs` for a {teacher} teacher module. Add the "
            f"cached columns, pass `{teacher}_teacher=` to the trainer, or set `use_{teacher}_teacher=False`."
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        mode = "train" if model.training else "eval"
        signals = {teacher: self._teacher_signals(inputs, teacher, mode) for teacher in TEACHERS}
        outputs = model(input_values=inputs["input_values"], attention_mask=inputs.get("attention_mask"))

        teacher_terms = {}
        for teacher, signal in signals.items():
            if signal is None:
                continue
            if self.args.use_logit_kd:
                teacher_terms[f"{teacher}_logits"] = signal[0]
            if self.args.use_embedding_kd:
                teacher_terms[f"{teacher}_embedding"] = signal[1]
                teacher_terms[f"student_{teacher}_embedding"] = getattr(outputs, f"{teacher}_embedding")
        losses = emodistill_loss(
            outputs.logits,
            labels,
            **teacher_terms,
            alpha=self.args.alpha,
            beta=self.args.beta,
            gamma=self.args.gamma,
            tau_linguistic=self.args.tau_linguistic,
            tau_prosodic=self.args.tau_prosodic,
            alpha_prosodic=self.args.alpha_prosodic,
        )
        for name in ("ce", "logits_kd", "embedding_kd"):
            value = getattr(losses, name).detach()
            self._metrics[mode][name].append(self.accelerator.gather(value).mean().item())

        outputs.loss = losses.loss
        return (losses.loss, outputs) if return_outputs else losses.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean of each loss term since the last log (trl's pattern) to the Trainer's logs."""
        mode = "train" if self.model.training else "eval"
        terms = {name: sum(values) / len(values) for name, values in self._metrics[mode].items() if values}
        if mode == "eval":
            terms = {f"eval_{name}": value for name, value in terms.items()}
        super().log({**logs, **terms}, start_time)
        self._metrics[mode].clear()
