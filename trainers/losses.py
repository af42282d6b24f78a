"""The EmoDistill objective, Eq. (1)-(5) of the paper, as pure functions of tensors.

    L_logits     = KD(y_S, y_L; tau_L) + KD(y_S, y_P; tau_P)                 (1), (2)
    L_embeddings = L_cos(z'_L, z_L) + L_cos(z'_P, z_P)                       (3), (4)
    L_EmoDistill = alpha * L_logits + beta * L_embeddings + gamma * L_CE     (5)

`alpha_prosodic`, when given, weighs the prosodic teacher's logit term in place of alpha (our extension; left out it
is alpha, Eq. (5) as written).

A teacher passed as `None` drops its terms, which is how the paper's ablations are run. Every term is computed in
float32 whatever the dtype of the inputs (bf16/fp16 autocast would otherwise lose the small KL values).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class EmoDistillLossOutput:
    """The total loss and its three weighted parts (each unweighted, as logged), all float32 scalars."""

    loss: torch.Tensor
    logits_kd: torch.Tensor
    embedding_kd: torch.Tensor
    ce: torch.Tensor


def _check_2d(name: str, tensor: torch.Tensor, batch_size: int, width: int | None = None) -> None:
    if tensor.dim() != 2 or tensor.shape[0] != batch_size or (width is not None and tensor.shape[1] != width):
        expected = f"({batch_size}, {width if width is not None else 'D'})"
        raise ValueError(f"`{name}` must have shape {expected}, got {tuple(tensor.shape)}.")


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """
    Temperature-scaled logit distillation, Eq. (1)-(2): tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau)).

    The paper writes the term as L_KL(y_S || y_T); like Hinton et al. (2015) and every KD implementation, the teacher's
    distribution is the target, so the divergence is KL(p_T || p_S). The tau^2 factor (Hinton's scaling) keeps the
    gradient magnitude independent of the temperature, so the weights alpha/gamma keep their meaning when tau changes.

    Args:
        student_logits: `(batch, num_labels)`.
        teacher_logits: `(batch, num_labels)`.
        temperature: tau > 0.
    Returns:
        A float32 scalar, the mean over the batch.
    """
    if temperature <= 0:
        raise ValueError(f"The distillation temperature must be > 0, got {temperature}.")
    _check_2d("teacher_logits", teacher_logits, student_logits.shape[0], student_logits.shape[1])
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def embedding_kd_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """
    Embedding distillation, Eq. (3)-(4): the batch mean of 1 - cos(z'_T, z_T).

    The paper minimises the negative cosine similarity; shifting it by one makes the term >= 0 (0 when aligned)
    without changing its gradient.

    Args:
        student_embedding: `(batch, dim)`, a projection head's output z'_T.
        teacher_embedding: `(batch, dim)`, the teacher's embedding z_T.
    Returns:
        A float32 scalar in [0, 2].
    """
    if student_embedding.dim() != 2 or student_embedding.shape != teacher_embedding.shape:
        raise ValueError(
            f"The student's projection has shape {tuple(student_embedding.shape)} but the teacher's embedding has "
            f"shape {tuple(teacher_embedding.shape)}: both must be (batch, dim) with the same dim. Set the student "
            "config's `linguistic_embedding_dim` / `prosodic_embedding_dim` to the teacher's embedding size."
        )
    cosine = F.cosine_similarity(student_embedding.float(), teacher_embedding.float(), dim=-1)
    return (1.0 - cosine).mean()


def emodistill_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    linguistic_logits: torch.Tensor | None = None,
    prosodic_logits: torch.Tensor | None = None,
    student_linguistic_embedding: torch.Tensor | None = None,
    linguistic_embedding: torch.Tensor | None = None,
    student_prosodic_embedding: torch.Tensor | None = None,
    prosodic_embedding: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
    tau_linguistic: float = 1.0,
    tau_prosodic: float = 1.0,
    alpha_prosodic: float | None = None,
) -> EmoDistillLossOutput:
    """
    The full EmoDistill loss, Eq. (5): alpha * L_logits + beta * L_embeddings + gamma * L_CE.

    Args:
        student_logits: `(batch, num_labels)`, the student's logits z_S.
        labels: `(batch,)` class indices in `[0, num_labels)`.
        linguistic_logits, prosodic_logits: `(batch, num_labels)` teacher logits, or `None` to drop that teacher's
            logit term.
        student_linguistic_embedding, linguistic_embedding: `(batch, d_L)` z'_L and z_L, or `None` (both or neither).
        student_prosodic_embedding, prosodic_embedding: `(batch, d_P)` z'_P and z_P, or `None` (both or neither).
        alpha, beta, gamma: weights of the logit KD, embedding KD and cross-entropy terms (>= 0).
        tau_linguistic, tau_prosodic: distillation temperatures per teacher (> 0).
        alpha_prosodic: the weight of the prosodic teacher's logit term (>= 0); `None`: alpha.
    Returns:
        [`EmoDistillLossOutput`] (its `logits_kd` is the unweighted sum of both teachers' terms); a dropped level
        contributes an exact zero.
    """
    if student_logits.dim() != 2:
        raise ValueError(f"`student_logits` must have shape (batch, num_labels), got {tuple(student_logits.shape)}.")
    batch_size, num_labels = student_logits.shape
    if labels.shape != (batch_size,):
        raise ValueError(f"`labels` must have shape ({batch_size},), got {tuple(labels.shape)}.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(
            f"labels must lie in [0, {num_labels}), got values from {labels.min().item()} to {labels.max().item()}."
        )
    if alpha_prosodic is None:
        alpha_prosodic = alpha
    for name, weight in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("alpha_prosodic", alpha_prosodic)):
        if weight < 0:
            raise ValueError(f"`{name}` must be >= 0, got {weight}.")

    zero = student_logits.new_zeros((), dtype=torch.float32)
    logit_terms = {
        teacher: logit_kd_loss(student_logits, teacher_logits, temperature)
        for teacher, teacher_logits, temperature in (
            ("linguistic", linguistic_logits, tau_linguistic),
            ("prosodic", prosodic_logits, tau_prosodic),
        )
        if teacher_logits is not None
    }
    logits_kd = sum(logit_terms.values(), zero)
    if alpha_prosodic == alpha:  # Eq. (5) as written, summed in its order: one float path with and without the option
        weighted_logits_kd = alpha * logits_kd
    else:
        weights = {"linguistic": alpha, "prosodic": alpha_prosodic}
        weighted_logits_kd = sum((weights[teacher] * term for teacher, term in logit_terms.items()), zero)

    embedding_kd = zero
    for name, student_embedding, teacher_embedding in (
        ("linguistic", student_linguistic_embedding, linguistic_embedding),
        ("prosodic", student_prosodic_embedding, prosodic_embedding),
    ):
        if (student_embedding is None) != (teacher_embedding is None):
            raise ValueError(f"Pass both the student's and the teacher's {name} embeddings, or neither.")
        if teacher_embedding is not None:
            embedding_kd = embedding_kd + embedding_kd_loss(student_embedding, teacher_embedding)

    ce = F.cross_entropy(student_logits.float(), labels)
    loss = weighted_logits_kd + beta * embedding_kd + gamma * ce
    return EmoDistillLossOutput(loss=loss, logits_kd=logits_kd, embedding_kd=embedding_kd, ce=ce)
