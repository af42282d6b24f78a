"""Training side of EmoDistill: the loss, the trainer and its arguments, the collator, the teachers.

The names below are imported on first use (PEP 562, as transformers' `_LazyModule` does), so that a light command
of this package, such as `emodistill-cache`, starts without loading torch and transformers.
"""

import importlib

# Each exported name and the submodule that defines it.
_EXPORTS = {
    "CACHED_TEACHER_COLUMNS": "collator",
    "EmoDistillDataCollator": "collator",
    "EmoDistillLossOutput": "losses",
    "EmoDistillTrainer": "trainer",
    "EmoDistillTrainingArguments": "arguments",
    "embedding_kd_loss": "losses",
    "emodistill_loss": "losses",
    "freeze_model": "trainer",
    "logit_kd_loss": "losses",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
