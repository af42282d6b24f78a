"""`EmoDistillTrainingArguments`: the `TrainingArguments` of a distillation run, validated at construction, and the
paper's ablations (one table for the flag and the paper's row names)."""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .teachers import TEACHERS


@dataclass(frozen=True)
class Ablation:
    """One row of the paper's ablation study (Table 2): its name there, and the switches that produce it."""

    paper_row: str
    switches: dict


# The two rows every comparison names: the full method (the ablation that removes nothing) and CE fine-tuning alone.
FULL_METHOD = "none"
CE_ONLY = "no_teachers"
ABLATIONS = {
    FULL_METHOD: Ablation("Ours (EmoDistill)", {}),
    "no_logit_kd": Ablation("w/o L_logits", {"use_logit_kd": False}),
    "no_embedding_kd": Ablation("w/o L_embedding", {"use_embedding_kd": False}),
    "no_prosodic_teacher": Ablation("w/o f_T^P", {"use_prosodic_teacher": False}),
    "no_linguistic_teacher": Ablation("w/o f_T^L", {"use_linguistic_teacher": False}),
    CE_ONLY: Ablation("w/o f_T^P and f_T^L", {"use_linguistic_teacher": False, "use_prosodic_teacher": False}),
}
ABLATION_SWITCHES = ("use_linguistic_teacher", "use_prosodic_teacher", "use_logit_kd", "use_embedding_kd")
# The two rows of Table 2 without a student: a teacher alone, scored on the test speakers.
TEACHER_ALONE_ROWS = {"linguistic": "w/o f_S and f_T^P", "prosodic": "w/o f_S and f_T^L"}


@dataclass
class EmoDistillTrainingArguments(TrainingArguments):
    r"""
    [`TrainingArguments`] plus the EmoDistill objective, Eq. (5): alpha * L_logits + beta * L_embeddings + gamma * L_CE.

    Every field is a command-line flag through [`HfArgumentParser`] (`--alpha 0.5 --no_prosodic_teacher ...`).
    Switching a teacher or a KD level off drops its terms from the loss; `ablation` does it by the paper's row.
    A configuration whose loss has no live term (all weights of the remaining terms 0) is refused here, at parse
    time; with alpha = beta = 0 (or no teacher) the run is the cross-entropy baseline and no teacher is needed.
    """

    alpha: float = field(default=1.0, metadata={"help": "Weight of the logit-level KD term L_logits, Eq. (1)."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the embedding-level KD term L_embeddings, Eq. (3)."})
    gamma: float = field(default=1.0, metadata={"help": "Weight of the cross-entropy term L_CE."})
    alpha_prosodic: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the prosodic teacher's logit term in place of alpha (our extension of Eq. (5); "
            "default: alpha, the paper's single weight)."
        },
    )
    tau_linguistic: float = field(
        default=1.0, metadata={"help": "Temperature of the linguistic teacher's softmax in L_logits, Eq. (2)."}
    )
    tau_prosodic: float = field(
        default=1.0, metadata={"help": "Temperature of the prosodic teacher's softmax in L_logits, Eq. (2)."}
    )
    use_linguistic_teacher: bool = field(
        default=True, metadata={"help": "Distil from the linguistic (text) teacher f_T^L."}
    )
    use_prosodic_teacher: bool = field(
        default=True, metadata={"help": "Distil from the prosodic (eGeMAPS) teacher f_T^P."}
    )
    use_logit_kd: bool = field(default=True, metadata={"help": "Keep the logit-level KD term L_logits."})
    use_embedding_kd: bool = field(default=True, metadata={"help": "Keep the embedding-level KD term L_embeddings."})
    ablation: str = field(
        default=FULL_METHOD,
        metadata={
            "help": "A row of the paper's ablation table; sets the use_* switches above. "
            + "; ".join(f"{name}: {a.paper_row}" for name, a in ABLATIONS.items()),
            "choices": list(ABLATIONS),
        },
    )
    # Cached teacher outputs and raw audio ride in the batch as extra columns: the collator needs to see them.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads audio and teacher columns."}
    )

    def __post_init__(self):
        if self.ablation not in ABLATIONS:
            raise ValueError(f"Unknown ablation {self.ablation!r}; choose one of {list(ABLATIONS)}.")
        for name, value in ABLATIONS[self.ablation].switches.items():
            setattr(self, name, value)
        for name in ("alpha", "beta", "gamma", "alpha_prosodic"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        for name in ("tau_linguistic", "tau_prosodic"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` (a softmax temperature) must be > 0, got {getattr(self, name)}.")
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns=True` would drop the audio and teacher columns before the collator sees them; "
                "EmoDistill needs it False."
            )
        if self.alpha == self.beta == self.gamma == 0 and not self.alpha_prosodic:
            raise ValueError("alpha, beta and gamma are all 0: the loss would be identically zero.")
        if not self.live_terms:
            raise ValueError(
                f"No term of the loss is live (ablation {self.ablation!r}, teachers "
                f"{[t for t in TEACHERS if getattr(self, f'use_{t}_teacher')]}, alpha={self.alpha}, "
                f"alpha_prosodic={self.logit_weights['prosodic']}, beta={self.beta}, gamma={self.gamma}): every "
                "batch would have loss 0. Give the remaining terms a positive weight."
            )
        super().__post_init__()

    @property
    def logit_weights(self) -> dict[str, float]:
        """Each teacher's weight in L_logits: alpha, and alpha_prosodic for the prosodic teacher when it is set."""
        return {
            "linguistic": self.alpha,
            "prosodic": self.alpha if self.alpha_prosodic is None else self.alpha_prosodic,
        }

    def _reads_teacher(self, teacher: str) -> dict[str, bool]:
        """Which KD levels read `teacher`: switched on, with a positive weight."""
        if not getattr(self, f"use_{teacher}_teacher"):
            return {"logits_kd": False, "embedding_kd": False}
        return {
            "logits_kd": self.use_logit_kd and self.logit_weights[teacher] > 0,
            "embedding_kd": self.use_embedding_kd and self.beta > 0,
        }

    @property
    def live_terms(self) -> list[str]:
        """The loss terms that contribute: `"ce"`, `"logits_kd"`, `"embedding_kd"` (KD ones only with a teacher)."""
        terms = ["ce"] if self.gamma > 0 else []
        for term in ("logits_kd", "embedding_kd"):
            if any(self._reads_teacher(teacher)[term] for teacher in TEACHERS):
                terms.append(term)
        return terms

    @property
    def teachers_needed(self) -> tuple[str, ...]:
        """The teachers a live KD term reads (none for the CE baseline: then no teacher is trained or run)."""
        return tuple(t for t in TEACHERS if any(self._reads_teacher(t).values()))
