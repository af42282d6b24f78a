"""Launched by test_distributed.py in two CPU processes: a few EmoDistillTrainer steps, then a JSON report."""

import json
import sys

import torch.distributed as dist
from datasets import Dataset

from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments

from tiny_models import feature_extractor, tiny_student, toy_rows


def main(output_dir: str) -> None:
    args = EmoDistillTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=2,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    trainer = EmoDistillTrainer(
        model=tiny_student(),
        args=args,
        train_dataset=Dataset.from_list(toy_rows(8)),
        eval_dataset=Dataset.from_list(toy_rows(6, seed=1)),
        data_collator=EmoDistillDataCollator(feature_extractor()),
    )
    trainer.train()
    predictions = trainer.predict(Dataset.from_list(toy_rows(6, seed=1)))
    report = {
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "num_processes": trainer.accelerator.num_processes,
        "num_predictions": len(predictions.predictions),
        "train_logs": [log for log in trainer.state.log_history if "loss" in log],
    }
    with open(f"{output_dir}/rank{trainer.args.process_index}.json", "w") as f:
        json.dump(report, f)
    if dist.is_initialized():
        dist.destroy_process_group()  # a gloo group left alive at exit can abort the interpreter (SIGABRT)


if __name__ == "__main__":
    main(sys.argv[1])
