"""The EmoDistill loss against values computed by hand, term by term, ablation by ablation."""

import math

import numpy as np
import pytest
import torch

from emodistill.trainers.losses import embedding_kd_loss, emodistill_loss, logit_kd_loss

STUDENT = [[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]]
LINGUISTIC = [[1.0, 1.0, 0.0, -2.0], [3.0, -1.0, 0.0, 0.5]]
PROSODIC = [[0.0, 2.0, 1.0, 0.0], [-1.0, 0.0, 1.0, 2.0]]
LABELS = [0, 3]


def softmax(z, tau=1.0):
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def kd_by_hand(student, teacher, tau):
    """tau^2 * mean_i sum_c p_T log(p_T / p_S), written out."""
    total = 0.0
    for s, t in zip(student, teacher):
        p_s, p_t = softmax(s, tau), softmax(t, tau)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return tau**2 * total / len(student)


def cos_by_hand(a, b):
    total = 0.0
    for x, y in zip(a, b):
        dot = sum(i * j for i, j in zip(x, y))
        total += 1 - dot / (math.sqrt(sum(i * i for i in x)) * math.sqrt(sum(j * j for j in y)))
    return total / len(a)


def ce_by_hand(student, labels):
    return -sum(math.log(softmax(s)[y]) for s, y in zip(student, labels)) / len(labels)


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0, 0.5])
def test_logit_kd_matches_hand_computation(tau):
    assert logit_kd_loss(t(STUDENT), t(LINGUISTIC), tau).item() == pytest.approx(
        kd_by_hand(STUDENT, LINGUISTIC, tau), rel=1e-5
    )


def test_logit_kd_is_zero_for_identical_logits_and_direction_is_teacher_to_student():
    assert logit_kd_loss(t(STUDENT), t(STUDENT), 3.0).item() == pytest.approx(0.0, abs=1e-7)
    # KL is asymmetric: swapping the roles gives another value, so the direction matters and is pinned here.
    forward = logit_kd_loss(t(STUDENT), t(PROSODIC), 1.0).item()
    backward = logit_kd_loss(t(PROSODIC), t(STUDENT), 1.0).item()
    assert forward == pytest.approx(kd_by_hand(STUDENT, PROSODIC, 1.0), rel=1e-5)
    assert forward != pytest.approx(backward)


def test_embedding_kd_is_one_minus_cosine():
    a, b = [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]], [[2.0, 1.0, 1.0], [-0.5, 1.0, 0.0]]
    assert embedding_kd_loss(t(a), t(b)).item() == pytest.approx(cos_by_hand(a, b), rel=1e-5)
    assert embedding_kd_loss(t(a), t(a) * 3).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_kd_loss(t(a), -t(a)).item() == pytest.approx(2.0)


def full_inputs():
    rng = np.random.default_rng(0)
    return dict(
        linguistic_logits=t(LINGUISTIC),
        prosodic_logits=t(PROSODIC),
        student_linguistic_embedding=t(rng.standard_normal((2, 5)).tolist()),
        linguistic_embedding=t(rng.standard_normal((2, 5)).tolist()),
        student_prosodic_embedding=t(rng.standard_normal((2, 3)).tolist()),
        prosodic_embedding=t(rng.standard_normal((2, 3)).tolist()),
    )


def by_hand(inputs, alpha, beta, gamma, tau_l, tau_p):
    logits_kd = 0.0
    if inputs.get("linguistic_logits") is not None:
        logits_kd += kd_by_hand(STUDENT, inputs["linguistic_logits"].tolist(), tau_l)
    if inputs.get("prosodic_logits") is not None:
        logits_kd += kd_by_hand(STUDENT, inputs["prosodic_logits"].tolist(), tau_p)
    embedding_kd = 0.0
    for name in ("linguistic", "prosodic"):
        if inputs.get(f"{name}_embedding") is not None:
            embedding_kd += cos_by_hand(
                inputs[f"student_{name}_embedding"].tolist(), inputs[f"{name}_embedding"].tolist()
            )
    ce = ce_by_hand(STUDENT, LABELS)
    return alpha * logits_kd + beta * embedding_kd + gamma * ce, logits_kd, embedding_kd, ce


ABLATIONS = {
    "full": [],
    "no_logit_kd": ["linguistic_logits", "prosodic_logits"],
    "no_embedding_kd": [
        "student_linguistic_embedding",
        "linguistic_embedding",
        "student_prosodic_embedding",
        "prosodic_embedding",
    ],
    "no_prosodic_teacher": ["prosodic_logits", "student_prosodic_embedding", "prosodic_embedding"],
    "no_linguistic_teacher": ["linguistic_logits", "student_linguistic_embedding", "linguistic_embedding"],
}


@pytest.mark.parametrize("ablation", list(ABLATIONS))
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0, 1.0), (0.5, 2.0, 0.3, 4.0, 1.5)])
def test_emodistill_loss_matches_hand_computation(ablation, weights):
    alpha, beta, gamma, tau_l, tau_p = weights
    inputs = {k: v for k, v in full_inputs().items() if k not in ABLATIONS[ablation]}
    out = emodistill_loss(
        t(STUDENT),
        torch.tensor(LABELS),
        **inputs,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        tau_linguistic=tau_l,
        tau_prosodic=tau_p,
    )
    total, logits_kd, embedding_kd, ce = by_hand(inputs, *weights)
    assert out.loss.item() == pytest.approx(total, rel=1e-5)
    assert out.logits_kd.item() == pytest.approx(logits_kd, rel=1e-5, abs=1e-7)
    assert out.embedding_kd.item() == pytest.approx(embedding_kd, rel=1e-5, abs=1e-7)
    assert out.ce.item() == pytest.approx(ce, rel=1e-5)


@pytest.mark.parametrize("ablation", ["full", "no_linguistic_teacher", "no_prosodic_teacher"])
def test_the_prosodic_logit_weight_replaces_alpha_for_that_teacher_only(ablation):
    inputs = {k: v for k, v in full_inputs().items() if k not in ABLATIONS[ablation]}
    settings = dict(beta=0.5, gamma=1.0, tau_linguistic=4.0, tau_prosodic=0.5)
    out = emodistill_loss(t(STUDENT), torch.tensor(LABELS), **inputs, alpha=0.25, alpha_prosodic=2.0, **settings)
    linguistic = kd_by_hand(STUDENT, LINGUISTIC, 4.0) if "linguistic_logits" in inputs else 0.0
    prosodic = kd_by_hand(STUDENT, PROSODIC, 0.5) if "prosodic_logits" in inputs else 0.0
    _, _, embedding_kd, ce = by_hand(inputs, 0.0, 0.5, 1.0, 4.0, 0.5)
    assert out.loss.item() == pytest.approx(0.25 * linguistic + 2.0 * prosodic + 0.5 * embedding_kd + ce, rel=1e-5)
    assert out.logits_kd.item() == pytest.approx(linguistic + prosodic, rel=1e-5)  # logged unweighted, as before
    # Left out, or equal to alpha, it is Eq. (5) as written, to the bit.
    plain = emodistill_loss(t(STUDENT), torch.tensor(LABELS), **inputs, alpha=0.25, **settings)
    same = emodistill_loss(t(STUDENT), torch.tensor(LABELS), **inputs, alpha=0.25, alpha_prosodic=0.25, **settings)
    assert plain.loss.item() == same.loss.item()
    assert plain.loss.item() == pytest.approx(0.25 * (linguistic + prosodic) + 0.5 * embedding_kd + ce, rel=1e-5)


def test_no_teachers_is_plain_cross_entropy():
    out = emodistill_loss(t(STUDENT), torch.tensor(LABELS), gamma=2.0)
    assert out.logits_kd.item() == 0.0 and out.embedding_kd.item() == 0.0
    assert out.loss.item() == pytest.approx(2.0 * ce_by_hand(STUDENT, LABELS))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    low = {k: v.to(dtype) for k, v in full_inputs().items()}
    out = emodistill_loss(t(STUDENT, dtype), torch.tensor(LABELS), **low, tau_linguistic=2.0)
    assert out.loss.dtype == torch.float32
    # The same rounded inputs upcast by hand give the same float32 value: no step ran in half precision.
    upcast = {k: v.float() for k, v in low.items()}
    reference = emodistill_loss(t(STUDENT, dtype).float(), torch.tensor(LABELS), **upcast, tau_linguistic=2.0)
    assert out.loss.item() == pytest.approx(reference.loss.item(), rel=1e-6)


def test_gradient_flows_to_student_only():
    student = t(STUDENT).requires_grad_()
    teacher = t(LINGUISTIC).requires_grad_()
    emodistill_loss(student, torch.tensor(LABELS), linguistic_logits=teacher.detach()).loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_bad_arguments_raise_clear_errors():
    labels = torch.tensor(LABELS)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        emodistill_loss(t(STUDENT), labels, linguistic_logits=t(LINGUISTIC), tau_linguistic=-1.0)
    with pytest.raises(ValueError, match=r"projection has shape \(2, 5\).*embedding has shape \(2, 4\)"):
        emodistill_loss(
            t(STUDENT), labels, student_linguistic_embedding=torch.zeros(2, 5), linguistic_embedding=torch.ones(2, 4)
        )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        emodistill_loss(t(STUDENT), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"teacher_logits.*\(2, 4\)"):
        emodistill_loss(t(STUDENT), labels, prosodic_logits=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="both the student's and the teacher's prosodic"):
        emodistill_loss(t(STUDENT), labels, prosodic_embedding=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="`beta` must be >= 0"):
        emodistill_loss(t(STUDENT), labels, beta=-0.1)
    with pytest.raises(ValueError, match="`alpha_prosodic` must be >= 0"):
        emodistill_loss(t(STUDENT), labels, alpha_prosodic=-1.0)
