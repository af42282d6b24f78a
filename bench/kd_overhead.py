"""Cost of distillation per training step: `EmoDistillTrainer` against a plain `Trainer` on `HubertForSequenceClassification`.

Both sides run the same step, `Trainer.training_step` (forward + backward) then `optimizer.step()` and `zero_grad()`,
with the same backbone configuration and weights, the same batch, and the same optimizer (AdamW from
`create_optimizer`). The EmoDistill side adds its two projection heads, the loss of Eq. (5) and the per-term logging:

* `kd_over_ce_ratio_cached`: teacher outputs come from the batch (cached columns), no teacher runs;
* `kd_over_ce_ratio_online`: the real teachers run in the step: `LinguisticTeacher` on the offline pretrained MiniLM
  (`DEFAULT_LINGUISTIC_BACKBONE`) over the transcripts, and `ProsodicResNetTeacher` over eGeMAPS descriptors (the
  descriptors themselves are a dataset column computed once, see `bench/features.py`).

    python bench/kd_overhead.py            # the default student's size (3.6 M) and a hubert-base-sized backbone
    python bench/kd_overhead.py --quick    # seconds
"""

import statistics
import tempfile

import numpy as np
import torch
from common import (
    LABELS,
    RATE,
    TEXTS,
    alternate,
    apply_threads,
    base_parser,
    ratio_summary,
    side_summary,
    write_result,
)
from transformers import (
    AutoTokenizer,
    HubertConfig,
    HubertForSequenceClassification,
    Trainer,
    TrainingArguments,
    Wav2Vec2FeatureExtractor,
)

from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification
from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments
from emodistill.trainers.pretraining import STUDENT_ARCHITECTURE
from emodistill.trainers.teachers import (
    DEFAULT_LINGUISTIC_BACKBONE,
    LinguisticTeacher,
    ProsodicResNetTeacher,
    ProsodicTeacherConfig,
)

# (name, backbone configuration, batch size, seconds of audio per example) for the full run.
SETTINGS = [
    ("default_student", STUDENT_ARCHITECTURE, 8, 3.0),
    ("hubert_base_size", {}, 2, 2.0),
]
QUICK_SETTINGS = [("default_student", STUDENT_ARCHITECTURE, 2, 1.0)]


def rows(batch_size: int, seconds: float, linguistic_dim: int, prosodic_dim: int) -> list[dict]:
    rng = np.random.default_rng(0)
    frames = int(seconds * 100) - 4  # eGeMAPS: one 25-descriptor frame per 10 ms
    return [
        {
            "input_values": (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32),
            "label": i % len(LABELS),
            "text": TEXTS[i % len(TEXTS)],
            "egemaps": rng.standard_normal((frames, 25)).astype(np.float32),
            "linguistic_logits": rng.standard_normal(len(LABELS)).astype(np.float32),
            "linguistic_embedding": rng.standard_normal(linguistic_dim).astype(np.float32),
            "prosodic_logits": rng.standard_normal(len(LABELS)).astype(np.float32),
            "prosodic_embedding": rng.standard_normal(prosodic_dim).astype(np.float32),
        }
        for i in range(batch_size)
    ]


def stepper(trainer: Trainer, batch: dict, steps: int):
    """`steps` optimisation steps of `trainer` on `batch`: `training_step` (forward + backward), `step`, `zero_grad`."""
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # what `train()` sets before its first step

    def step():
        for _ in range(steps):
            trainer.training_step(trainer.model, dict(batch))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

    return step


def measure(
    name: str, backbone: dict, batch_size: int, seconds: float, repetitions: int, steps: int, output_dir: str
) -> dict:
    linguistic = LinguisticTeacher.from_backbone(DEFAULT_LINGUISTIC_BACKBONE, num_labels=len(LABELS))
    prosodic = ProsodicResNetTeacher(ProsodicTeacherConfig(num_labels=len(LABELS)))
    labels = dict(id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)})
    torch.manual_seed(0)
    student = EmoDistillForAudioClassification(
        EmoDistillConfig(
            **backbone,
            **labels,
            linguistic_embedding_dim=linguistic.embedding_dim,
            prosodic_embedding_dim=prosodic.embedding_dim,
        )
    )
    baseline = HubertForSequenceClassification(HubertConfig(**backbone, **labels))
    missing, _ = baseline.load_state_dict(student.state_dict(), strict=False)  # same backbone and head weights
    assert not missing, missing

    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )
    data = rows(batch_size, seconds, linguistic.embedding_dim, prosodic.embedding_dim)
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_LINGUISTIC_BACKBONE)
    cached_batch = EmoDistillDataCollator(extractor)(data)
    online_batch = EmoDistillDataCollator(extractor, tokenizer=tokenizer, include_prosodic_features=True)(
        [{k: v for k, v in row.items() if not k.startswith(("linguistic_", "prosodic_"))} for row in data]
    )
    plain_batch = {k: cached_batch[k] for k in ("input_values", "attention_mask", "labels")}

    common = dict(output_dir=output_dir, use_cpu=True, report_to="none", learning_rate=1e-4, seed=0)
    plain = Trainer(model=baseline, args=TrainingArguments(**common))
    cached = EmoDistillTrainer(model=student, args=EmoDistillTrainingArguments(**common))
    online = EmoDistillTrainer(
        model=student,
        args=EmoDistillTrainingArguments(**common),
        linguistic_teacher=linguistic,
        prosodic_teacher=prosodic,
    )
    times = alternate(
        {
            "ce_plain_trainer": stepper(plain, plain_batch, steps),
            "kd_cached": stepper(cached, cached_batch, steps),
            "kd_online": stepper(online, online_batch, steps),
        },
        repetitions,
    )
    return {
        "setting": name,
        "parameters_student": sum(p.numel() for p in student.parameters()),
        "parameters_baseline": sum(p.numel() for p in baseline.parameters()),
        "batch_size": batch_size,
        "seconds_per_example": seconds,
        "steps_per_repetition": steps,
        "sides": {side: side_summary(t) for side, t in times.items()},
        "kd_over_ce_ratio_cached": ratio_summary(times["kd_cached"], times["ce_plain_trainer"]),
        "kd_over_ce_ratio_online": ratio_summary(times["kd_online"], times["ce_plain_trainer"]),
    }


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=9)
    parser.add_argument("--steps", type=int, default=3, help="optimisation steps per side and repetition")
    parser.add_argument("--only", default=None, help="run only this setting (e.g. default_student)")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    settings = QUICK_SETTINGS if args.quick else [s for s in SETTINGS if args.only in (None, s[0])]
    repetitions = 3 if args.quick else args.repetitions
    steps = 1 if args.quick else args.steps
    results = []
    with tempfile.TemporaryDirectory() as output_dir:
        for name, backbone, batch_size, seconds in settings:
            results.append(measure(name, backbone, batch_size, seconds, repetitions, steps, output_dir))
            r = results[-1]
            print(
                f"{name}: batch {batch_size} x {seconds:.0f} s, plain CE step "
                f"{r['sides']['ce_plain_trainer']['median_s'] / r['steps_per_repetition']:.3f} s; KD/CE cached "
                f"{r['kd_over_ce_ratio_cached']['median_ratio']:.3f} (target <= 1.05), online "
                f"{r['kd_over_ce_ratio_online']['median_ratio']:.3f}"
            )
    path = write_result(
        "kd_overhead",
        {
            "quick": args.quick,
            "repetitions": repetitions,
            "target": {"kd_over_ce_ratio_cached": "<= 1.05"},
            "settings": results,
            "kd_over_ce_ratio_cached": max(r["kd_over_ce_ratio_cached"]["median_ratio"] for r in results),
            "kd_over_ce_ratio_online": statistics.median(
                r["kd_over_ce_ratio_online"]["median_ratio"] for r in results
            ),
        },
        args.output,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
