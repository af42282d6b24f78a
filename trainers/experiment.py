"""The main job's configuration: argument dataclasses whose field defaults are the job's defaults, presets as argument
files, and `Experiment`, the frozen object the cross-validation runs from.

`python train.py --help` lists every field below. Precedence: field defaults < the preset's argument file < the
command line.
"""

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from emodistill.data_scripts.folds import PROTOCOLS
from emodistill.data_scripts.generated_folder import DEFAULT_CACHE_DIR
from emodistill.data_scripts.iemocap import LABEL_SETS

from .arguments import ABLATION_SWITCHES, EmoDistillTrainingArguments
from .student import BUNDLED_STUDENT
from .teacher_training import TeacherArguments

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = sorted(path.stem for path in PRESET_DIR.glob("*.args"))


def comma_separated_integers(value: str, flag: str, example: str) -> list[int]:
    """A flag's comma-separated integers, each once (a repeated fold or seed would be counted twice)."""
    try:
        numbers = [int(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated integers such as {example}; got {value!r}.") from None
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise ValueError(f"{flag} {value} names {repeated} more than once.")
    return numbers


@dataclass
class StudentArguments:
    """The audio-only student f_S: a pretrained HuBERT checkpoint plus EmoDistill's heads."""

    student_model_name_or_path: str = field(
        default=BUNDLED_STUDENT,
        metadata={
            "help": "A HuBERT checkpoint (hub id or local folder in the hub's layout): facebook/hubert-base-ls960 "
            f"(the paper), facebook/hubert-large-ll60k, ..., or {BUNDLED_STUDENT}: the HuBERT this project "
            "pretrains on unlabelled synthetic speech, shipped with the package."
        },
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Keep the pretrained CNN feature encoder fixed (as HuBERT fine-tuning does)."}
    )
    use_weighted_layer_sum: bool = field(
        default=False,
        metadata={"help": "Pool a learnt softmax-weighted sum of all layers (SUPERB) instead of the last."},
    )
    normalize_waveform: bool | None = field(
        default=None,
        metadata={
            "help": "Scale each utterance to zero mean and unit variance before the student (default: as the "
            "checkpoint's feature extractor says, `do_normalize`: true for the shipped student). Normalised, the "
            "student never hears how loud an utterance is (bench/level_invariance.py)."
        },
    )
    # Fine-tuning dropouts, flags as in transformers' speech examples (run_speech_recognition_ctc.py). Random masks are
    # slow to draw on a CPU: without attention and activation dropout the default's step takes 0.57x the time in
    # float32 (bench/student_step.py); the checkpoint's hidden dropout stays. None: the checkpoint's config value.
    hidden_dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout on each layer's attention and feed-forward outputs (default: the checkpoint's)."},
    )
    attention_dropout: float | None = field(
        default=0.0,
        metadata={"help": "Dropout on the attention probabilities (the paper preset: 0.1, hubert-base's own)."},
    )
    activation_dropout: float | None = field(
        default=0.0,
        metadata={"help": "Dropout after the feed-forward activation (the paper preset: 0.1, hubert-base's own)."},
    )

    def __post_init__(self):
        for name, value in self.dropouts.items():
            if not 0 <= value < 1:
                raise ValueError(f"--{name} is a dropout probability in [0, 1), got {value}.")

    @property
    def dropouts(self) -> dict[str, float]:
        """The dropouts that replace the checkpoint's HuBERT config values (those not None)."""
        names = ("hidden_dropout", "attention_dropout", "activation_dropout")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class DataArguments:
    """The corpus, its folds and the student's view of the audio."""

    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "An IEMOCAP_full_release folder (the one holding Session1..5). Default: the synthetic corpus, "
            "generated into --cache_dir on first use."
        },
    )
    cache_dir: str = field(
        default=DEFAULT_CACHE_DIR,
        metadata={
            "help": "Synthetic corpus, Arrow caches and teacher caches (default: $EMODISTILL_CACHE or ~/.cache/emodistill)."
        },
    )
    force_reload: bool = field(
        default=False, metadata={"help": "Re-read the corpus even if its cache matches the files' listing."}
    )
    protocol: str = field(
        default="loso10", metadata={"help": "loso10 (the paper) or loso5.", "choices": list(PROTOCOLS)}
    )
    folds: str | None = field(default=None, metadata={"help": "Comma-separated 1-based folds to run, e.g. 1,2."})
    label_set: str = field(
        default="4class",
        metadata={"help": "4class (exc merged into happy), 4class_no_exc, all.", "choices": list(LABEL_SETS)},
    )
    skip_bad_audio: bool = field(
        default=False, metadata={"help": "Skip (and count) unreadable wavs instead of failing."}
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={"help": "Random crop length of training utterances in seconds (default: whole utterances)."},
    )
    synthetic_utterances_per_speaker: int = field(
        default=45, metadata={"help": "Size of the generated corpus (4-class utterances per speaker)."}
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for audio decoding and eGeMAPS extraction."}
    )

    def __post_init__(self):
        self.fold_numbers()  # a malformed --folds fails when parsed

    def fold_numbers(self) -> list[int] | None:
        """`--folds` as numbers; a repeated fold is an error (it would be counted twice)."""
        if self.folds is None:
            return None
        return comma_separated_integers(self.folds, "--folds", example="1,2")


@dataclass
class RunArguments:
    """What the job does with the configuration: one cross-validation, a sweep, the ablation table, or a gathering."""

    preset: str | None = field(
        default=None,
        metadata={
            "help": f"An argument file read before the command line: one of {PRESETS} (trainers/presets/<name>.args) "
            "or a path. `paper`: the paper's backbones, optimiser and global batch 128, for GPUs."
        },
    )
    tau_sweep: str | None = field(
        default=None,
        metadata={
            "help": "prosodic=V1,V2,... (linguistic teacher removed) or linguistic=V1,... (prosodic teacher "
            "removed): one cross-validation per temperature, validation and test UA per value, the plot of Fig. 2."
        },
    )
    ablation_table: bool = field(
        default=False,
        metadata={"help": "Run every row of the paper's ablation table for each of --seeds and write the table."},
    )
    seeds: str = field(default="0,1,2", metadata={"help": "Seeds of --ablation_table."})
    gather: bool = field(
        default=False,
        metadata={
            "help": "Train nothing: collect the finished folds in --output_dir (e.g. from fold-parallel jobs) into "
            "results.json, results.md and the model card. Folds whose configuration differs are refused."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over: delete --output_dir first, once every argument and the data were checked, and only "
            "if this program created it."
        },
    )
    hub_fold: int | None = field(
        default=None, metadata={"help": "Fold whose student --push_to_hub publishes (default: best validation UA)."}
    )

    def __post_init__(self):
        modes = [f"--{name}" for name in ("gather", "tau_sweep", "ablation_table") if getattr(self, name)]
        if len(modes) > 1:
            raise ValueError(f"{' and '.join(modes)} are different jobs: run one at a time.")
        if self.tau_sweep is not None:
            self.tau_sweep_values()
        self.seed_values()

    def tau_sweep_values(self) -> tuple[str, list[float]]:
        """`--tau_sweep` as (the teacher whose temperature varies, the temperatures)."""
        teacher, _, values = self.tau_sweep.partition("=")
        try:
            taus = [float(v) for v in values.split(",")] if values else []
        except ValueError:
            taus = []
        if teacher not in ("prosodic", "linguistic") or not taus or any(t <= 0 for t in taus):
            raise ValueError(
                f"--tau_sweep takes prosodic=V1,V2,... or linguistic=V1,... (V > 0); got {self.tau_sweep!r}."
            )
        return teacher, taus

    def seed_values(self) -> list[int]:
        """`--seeds` as numbers, each once."""
        return comma_separated_integers(self.seeds, "--seeds", example="0,1,2")


# Inherited `TrainingArguments` that the job cannot honour: refused rather than silently ignored.
UNSUPPORTED_TRAINING_ARGUMENTS = {
    "resume_from_checkpoint": "the job resumes by itself: rerun the same command (finished folds are kept, an "
    "interrupted fold continues from its last checkpoint)",
    "do_train": "the job always trains, evaluates on validation and predicts the test speakers",
    "do_predict": "the job always trains, evaluates on validation and predicts the test speakers",
    "prediction_loss_only": "the job needs the predictions to score the test speakers",
    "batch_eval_metrics": "the SER metrics are computed over the whole split",
    "eval_do_concat_batches": "the SER metrics are computed over the whole split",
    "label_names": "the student's labels are `labels`",
    "length_column_name": "the job writes the `length` column itself",
    "hub_strategy": "the job pushes the chosen fold's student once, after the cross-validation",
    "hub_always_push": "the job pushes the chosen fold's student once, after the cross-validation",
}


def split_global_batch(total: int, per_device: int, world_size: int) -> tuple[int, int]:
    """`(per-device batch, gradient accumulation steps)` whose product with `world_size` is `total`, with the fewest
    accumulation steps and a per-device batch at most `per_device`: 128 with 32 per device is 32 x 4 steps on one
    device, 32 x 2 on two, 32 x 1 on four and 16 x 1 on eight."""
    accumulation = max(1, -(-total // (per_device * world_size)))
    if total % (world_size * accumulation):
        raise ValueError(
            f"A global batch of {total} cannot be split evenly over {world_size} processes (x {accumulation} "
            "accumulation steps): choose a world size that divides it, or another --global_train_batch_size."
        )
    return total // (world_size * accumulation), accumulation


def native_bf16(use_cpu: bool = False) -> bool:
    """Whether the student's device multiplies bfloat16 matrices in hardware: a CUDA GPU that supports bf16, or a CPU
    with AVX512-BF16 instructions or AMX tiles (Intel Xeon since Cooper Lake, AMD since Zen 4), on which oneDNN runs
    bf16 matrix products and convolutions (`avx512_core_bf16` and `avx512_core_amx` kernels). bench/student_step.py
    measured bf16 at 0.74x float32's step on an Intel Xeon with AMX and 0.68x on an AMD EPYC with AVX512-BF16 alone;
    a CPU without either emulates bf16, and keeps float32."""
    if torch.cuda.is_available() and not use_cpu:
        return torch.cuda.is_bf16_supported()
    # Private functions, absent from some torch builds: then float32.
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check is not None and check() for check in checks)


@dataclass
class JobTrainingArguments(EmoDistillTrainingArguments):
    """
    `EmoDistillTrainingArguments` with the main job's defaults: the embedded CPU run (the pretrained synthetic-speech
    HuBERT student, whole utterances, 8 epochs at 3e-4, batches of 16, evaluation and a checkpoint every epoch,
    the best validation UA kept, bf16 where the hardware multiplies it), a logit-KD weight alpha = 0.25 and soft
    linguistic and hard prosodic distillation temperatures (the temperatures' direction is the paper's finding; every
    value chosen on validation folds), and `global_train_batch_size`, from which gradient accumulation follows for
    any number of devices.
    """

    output_dir: str | None = field(
        default="outputs/emodistill", metadata={"help": "Where results and fold models go."}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW's peak learning rate."})
    num_train_epochs: float = field(default=8.0, metadata={"help": "Epochs of student training per fold."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up steps, or a fraction of all steps if < 1."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW's weight decay."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Utterances per device and step."})
    per_device_eval_batch_size: int = field(
        default=16, metadata={"help": "Utterances per device in evaluation (1 for a student without attention mask)."}
    )
    global_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Utterances per optimiser step over all devices: sets gradient_accumulation_steps (and lowers "
            "the per-device batch if needed) for the world size. The paper: 128."
        },
    )
    alpha: float = field(
        # 0.25: validation's pick among alpha in {1, 0.25} over seeds 0, 1, 2 (docs/experiments.md, "Loss weights on
        # validation"); alpha = 0 is the paper's "w/o L_logits" ablation, not a weight of the full method.
        default=0.25,
        metadata={"help": "Weight of the logit-level KD term L_logits, Eq. (1) (the paper preset: 1)."},
    )
    tau_linguistic: float = field(
        default=4.0, metadata={"help": "Temperature of the (strong) linguistic teacher: soft, Eq. (2)."}
    )
    tau_prosodic: float = field(
        # 0.5: the pick of `--tau_sweep prosodic=0.5,1,2` on validation (docs/experiments.md, "Temperatures on
        # validation").
        default=0.5,
        metadata={"help": "Temperature of the (weak) prosodic teacher: hard."},
    )
    eval_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When the validation speaker is scored."}
    )
    save_strategy: SaveStrategy | str = field(
        default="epoch", metadata={"help": "When a checkpoint is written (resume)."}
    )
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept (besides the best)."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation epoch."})
    metric_for_best_model: str | None = field(default="ua", metadata={"help": "Validation metric of the best epoch."})
    logging_strategy: IntervalStrategy | str = field(
        default="epoch", metadata={"help": "When training losses are logged (one line per epoch)."}
    )
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "Batches of similar lengths (less padding)."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data loading processes."})
    dataloader_pin_memory: bool = field(
        default=True, metadata={"help": "Pin batches in memory (only where a GPU is used; off on CPU)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the student (and of the teachers' training)."})
    disable_tqdm: bool | None = field(
        default=None, metadata={"help": "Progress bars off (default: off unless the output is a terminal)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bfloat16 autocast for the student (its losses stay float32; the teachers train in float32). "
            "Default: on where the hardware multiplies bf16 matrices (a CPU with AVX512-BF16 or AMX, a CUDA GPU "
            "with bf16), else off. A CPU run in bf16 needs --use_cpu, which the default sets for a single process."
        },
    )

    def __post_init__(self):
        defaults = {f.name: f.default for f in dataclasses.fields(EmoDistillTrainingArguments)}
        for name, reason in UNSUPPORTED_TRAINING_ARGUMENTS.items():
            if getattr(self, name) != defaults[name]:
                raise ValueError(f"--{name} is not supported by train.py: {reason}.")
        if self.disable_tqdm is None:
            self.disable_tqdm = not sys.stderr.isatty()
        if self.bf16 is None:
            self._resolve_bf16()
        super().__post_init__()
        if self.dataloader_pin_memory and self.device.type == "cpu":
            self.dataloader_pin_memory = False  # pinning without a GPU only warns, every epoch
        if self.global_train_batch_size is not None:
            self._derive_gradient_accumulation()

    def _resolve_bf16(self) -> None:
        """bf16 where the hardware computes it natively. transformers grants bf16 on a CPU only with `use_cpu`; it is
        set here for a single process, not for several: `use_cpu` would join processes launched without it into one
        group, where the job otherwise stops them (they would each run the whole job)."""
        cpu_only = self.use_cpu or not torch.cuda.is_available()
        if cpu_only and not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.bf16 = False
            return
        self.bf16 = native_bf16(self.use_cpu)
        if self.bf16 and cpu_only:
            self.use_cpu = True

    def _derive_gradient_accumulation(self) -> None:
        self.per_device_train_batch_size, self.gradient_accumulation_steps = split_global_batch(
            self.global_train_batch_size, self.per_device_train_batch_size, self.world_size
        )

    @property
    def global_batch(self) -> int:
        return self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps


ARGUMENT_CLASSES = (StudentArguments, DataArguments, TeacherArguments, RunArguments, JobTrainingArguments)


def resolve_preset(argv: list[str]) -> Path | None:
    """The argument file `--preset` names (a bundled name or a path), or None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == "--preset" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--preset="):
            value = arg.split("=", 1)[1]
    if value is None:
        return None
    path = PRESET_DIR / f"{value}.args" if value in PRESETS else Path(value)
    if not path.is_file():
        raise SystemExit(f"--preset {value!r} is neither one of {PRESETS} nor an argument file.")
    return path


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    parser.prog = "train.py"
    parser.description = (
        "EmoDistill's main job: cross-validated distillation of a linguistic and a prosodic teacher into an "
        f"audio-only student. Presets (--preset): {', '.join(PRESETS)}."
    )
    return parser


@dataclass(frozen=True)
class Experiment:
    """Everything one run is made of, resolved: the parsed arguments and the command that produced them."""

    student: StudentArguments
    data: DataArguments
    teachers: TeacherArguments
    run: RunArguments
    training: JobTrainingArguments
    command: str

    def replace(self, **changes) -> "Experiment":
        return dataclasses.replace(self, **changes)

    def with_training(self, **changes) -> "Experiment":
        """The same experiment with other training arguments (validated again); a new `ablation` resets the
        `use_*` switches to that ablation's."""
        values = {f.name: getattr(self.training, f.name) for f in dataclasses.fields(self.training) if f.init}
        if "ablation" in changes:  # the new ablation sets the teacher and KD-level switches afresh
            values.update({name: True for name in ABLATION_SWITCHES})
        values.update(changes)
        # The derived accumulation is recomputed from the global batch, not carried over.
        if values.get("global_train_batch_size") is not None:
            values["gradient_accumulation_steps"] = 1
        return self.replace(training=JobTrainingArguments(**values))


def parse_experiment(argv: list[str]) -> Experiment:
    """The job's configuration from the command line (after the preset's argument file, if any)."""
    preset = resolve_preset(argv)
    parser = build_parser()
    try:
        student, data, teachers, run, training = parser.parse_args_into_dataclasses(
            args=argv, args_filename=str(preset) if preset else None, look_for_args_file=False
        )
    except ValueError as error:  # a dataclass's own validation: a clean message, not a traceback
        parser.error(str(error))
    if training.push_to_hub and (run.tau_sweep or run.ablation_table):
        # Every variant would publish its own best fold, each overwriting the last under --hub_model_id.
        parser.error("--push_to_hub publishes one run's student: not with --tau_sweep or --ablation_table.")
    # `accelerate launch` passes its settings to the processes as ACCELERATE_* variables; `python` sets none.
    launcher = "accelerate launch" if any(k.startswith("ACCELERATE_") for k in os.environ) else "python"
    command = " ".join([launcher, "train.py", shlex.join(argv)]).strip()
    return Experiment(student, data, teachers, run, training, command)
