"""Cost of one training step of the embedded default's student, by precision and by fine-tuning dropout.

Every side is the job's own step: the shipped student (`build_student`, as `train.py` loads it) in an
`EmoDistillTrainer` with cached teacher columns, `training_step` (forward + backward) then `optimizer.step()` and
`zero_grad()`, on one batch of the job's size (16 utterances of 2.2 s, the synthetic corpus's mean length). The
sides differ only in

* precision: float32, or bf16 autocast as accelerate applies it under `--bf16 true`;
* dropout: the checkpoint's (hidden, attention and activation 0.1), without attention and activation dropout (the
  embedded default since 2026-12-03), or none at all.

Ratios are against float32 with the checkpoint's dropouts (the default before 2026-12-03). Whether bf16 pays off
depends on the CPU: `native_bf16` in the record says whether it has the instructions oneDNN multiplies bf16 matrices
with (AVX512-BF16 or AMX tiles). A newer CPU stands in for an older one with its kernels capped, e.g.
`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`; the record's `machine.isa_caps` names the caps, while
`native_bf16` still reads the CPU's own flags.

    python bench/student_step.py --threads 2     # the job's thread count on a 2-core machine
    python bench/student_step.py --quick         # seconds
"""

import tempfile

import torch
from common import LABELS, alternate, apply_threads, base_parser, ratio_summary, side_summary, write_result
from kd_overhead import rows, stepper
from transformers import AutoConfig

from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments
from emodistill.trainers.experiment import native_bf16
from emodistill.trainers.student import BUNDLED_STUDENT, build_student
from emodistill.trainers.teacher_training import TeacherArguments
from emodistill.trainers.teachers import DEFAULT_LINGUISTIC_BACKBONE

DROPOUTS = {
    "checkpoint_dropout": {},
    "no_attention_activation_dropout": {"attention_dropout": 0.0, "activation_dropout": 0.0},
    "no_dropout": {"attention_dropout": 0.0, "activation_dropout": 0.0, "hidden_dropout": 0.0},
}
BASELINE = "float32/checkpoint_dropout"


def side(precision: str, overrides: dict, batch: dict, steps: int, output_dir: str, dims: dict):
    """One side's step function: a fresh student (same weights on every side) in its own trainer."""
    torch.manual_seed(0)
    model, _ = build_student(BUNDLED_STUDENT, LABELS, **dims, config_overrides=overrides)
    args = EmoDistillTrainingArguments(
        output_dir=output_dir, use_cpu=True, bf16=precision == "bf16", report_to="none", learning_rate=1e-4, seed=0
    )
    trainer = EmoDistillTrainer(model=model, args=args)
    # What `train()` does first: accelerate wraps the forward in the autocast of mixed precision.
    trainer.model_wrapped = trainer.accelerator.prepare_model(trainer.model)
    if precision == "bf16" and "_original_forward" not in trainer.model.__dict__:
        raise RuntimeError("accelerate did not wrap the student's forward in autocast: the side would be float32.")
    trainer.model.train()
    return stepper(trainer, batch, steps)


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=5)
    parser.add_argument("--steps", type=int, default=3, help="optimisation steps per side and repetition")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    batch_size, seconds = (2, 0.5) if args.quick else (16, 2.2)
    repetitions, steps = (2, 1) if args.quick else (args.repetitions, args.steps)
    dims = {
        "linguistic_embedding_dim": AutoConfig.from_pretrained(DEFAULT_LINGUISTIC_BACKBONE).hidden_size,
        "prosodic_embedding_dim": TeacherArguments().prosodic_teacher_embedding_dim,
    }
    extractor = build_student(BUNDLED_STUDENT, LABELS, **dims)[1]
    batch = EmoDistillDataCollator(extractor)(
        rows(batch_size, seconds, dims["linguistic_embedding_dim"], dims["prosodic_embedding_dim"])
    )
    with tempfile.TemporaryDirectory() as output_dir:
        sides = {
            f"{precision}/{name}": side(precision, overrides, batch, steps, output_dir, dims)
            for precision in ("float32", "bf16")
            for name, overrides in DROPOUTS.items()
        }
        times = alternate(sides, repetitions)
    per_step = {name: side_summary([t / steps for t in values]) for name, values in times.items()}
    ratios = {name: ratio_summary(times[name], times[BASELINE]) for name in times if name != BASELINE}
    for name, summary in per_step.items():
        ratio = ratios[name]["median_ratio"] if name in ratios else 1.0
        print(f"{name}: {summary['median_s']:.3f} s per step, {ratio:.3f} x {BASELINE}")
    path = write_result(
        "student_step",
        {
            "quick": args.quick,
            "repetitions": repetitions,
            "steps_per_repetition": steps,
            "batch_size": batch_size,
            "seconds_per_example": seconds,
            "native_bf16": native_bf16(use_cpu=True),
            "dropouts": DROPOUTS,
            "seconds_per_step": per_step,
            "ratio_to_" + BASELINE.replace("/", "_"): ratios,
        },
        args.output,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
