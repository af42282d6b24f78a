"""`EmoDistillTrainingArguments`: the `TrainingArguments` of a distillation run, validated at construction."""

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class EmoDistillTrainingArguments(TrainingArguments):
    r"""
    [`TrainingArguments`] plus the EmoDistill objective, Eq. (5): alpha * L_logits + beta * L_embeddings + gamma * L_CE.

    Every field is a command-line flag through [`HfArgumentParser`] (`--alpha 0.5 --no_prosodic_teacher ...`).
    Switching a teacher or a KD level off drops its terms from the loss: the paper's ablations.
    """

    alpha: float = field(default=1.0, metadata={"help": "Weight of the logit-level KD term L_logits, Eq. (1)."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the embedding-level KD term L_embeddings, Eq. (3)."})
    gamma: float = field(default=1.0, metadata={"help": "Weight of the cross-entropy term L_CE."})
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
    # Cached teacher outputs and raw audio ride in the batch as extra columns: the collator needs to see them.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads audio and teacher columns."}
    )

    def __post_init__(self):
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        for name in ("tau_linguistic", "tau_prosodic"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` (a softmax temperature) must be > 0, got {getattr(self, name)}.")
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns=True` would drop the audio and teacher columns before the collator sees them; "
                "EmoDistill needs it False."
            )
        if self.alpha == self.beta == self.gamma == 0:
            raise ValueError("alpha, beta and gamma are all 0: the loss would be identically zero.")
        super().__post_init__()

    @property
    def distills(self) -> bool:
        """Whether any KD term is active (False for the plain cross-entropy baseline)."""
        levels = (self.use_logit_kd and self.alpha > 0) or (self.use_embedding_kd and self.beta > 0)
        return levels and (self.use_linguistic_teacher or self.use_prosodic_teacher)
