"""The teachers: shapes, normalisation from the training split, the output cache, and the leakage guard."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from emodistill.trainers import results, teacher_training
from emodistill.trainers.cache import CACHE_VERSION, scan_cache
from emodistill.trainers.teacher_training import (
    TeacherArguments,
    TeacherLeakageError,
    attach_teacher_outputs,
    train_teacher,
)
from emodistill.trainers.teachers import (
    DEFAULT_LINGUISTIC_BACKBONE,
    LinguisticTeacher,
    ProsodicResNetTeacher,
    ProsodicTeacherConfig,
)

TEXTS = ["i am so furious", "what a lovely surprise", "i miss him terribly", "the key is in the drawer"]


def toy_split(speakers, n_per_speaker=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for speaker in speakers:
        for i in range(n_per_speaker):
            label = i % 4
            # Class-dependent descriptor offsets, so the prosodic teacher has something to learn.
            egemaps = rng.standard_normal((int(rng.integers(30, 60)), 25)).astype(np.float32) + label
            rows.append(
                {
                    "id": f"{speaker}_{i:03d}",
                    "speaker": speaker,
                    "label": label,
                    "text": TEXTS[label],
                    "egemaps": egemaps,
                }
            )
    return Dataset.from_list(rows)


def fold_splits():
    return {
        "train": toy_split(["Ses02_F", "Ses02_M", "Ses03_F"]),
        "validation": toy_split(["Ses01_M"], seed=1),
        "test": toy_split(["Ses01_F"], seed=2),
    }


SETTINGS = TeacherArguments(
    linguistic_teacher_epochs=1,
    prosodic_teacher_epochs=2,
    linguistic_teacher_batch_size=8,
    prosodic_teacher_batch_size=8,
)


def test_prosodic_teacher_shapes_masking_and_save_round_trip(tmp_path):
    torch.manual_seed(0)
    teacher = ProsodicResNetTeacher(ProsodicTeacherConfig(num_labels=4, embedding_dim=32)).eval()
    features = torch.randn(2, 80, 25)
    mask = torch.ones(2, 80, dtype=torch.long)
    mask[0, 40:] = 0
    with torch.no_grad():
        out = teacher(features, mask)
        alone = teacher(features[:1, :40], mask[:1, :40])
    assert out.logits.shape == (2, 4) and out.embedding.shape == (2, 32)
    torch.testing.assert_close(out.logits[0], alone.logits[0], atol=1e-4, rtol=1e-3)  # padding is ignored
    teacher.set_normalization(np.full(25, 2.0), np.full(25, 3.0))
    teacher.save_pretrained(tmp_path)
    reloaded = ProsodicResNetTeacher.from_pretrained(tmp_path)
    assert torch.equal(reloaded.feature_mean, torch.full((25,), 2.0))
    with pytest.raises(Exception, match="4-layer ResNet"):
        ProsodicTeacherConfig(channels=(8, 16, 32))


def test_linguistic_teacher_on_the_offline_minilm(tmp_path):
    teacher = LinguisticTeacher.from_backbone(DEFAULT_LINGUISTIC_BACKBONE, num_labels=4).eval()
    tokenizer = LinguisticTeacher.tokenizer(DEFAULT_LINGUISTIC_BACKBONE)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = teacher(**batch)
    assert out.logits.shape == (4, 4) and out.embedding.shape == (4, 384) == (4, teacher.embedding_dim)
    teacher.save(tmp_path, tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(LinguisticTeacher.load(tmp_path).eval()(**batch).logits, out.logits)


@pytest.mark.parametrize("name", ["prosodic", "linguistic"])
def test_teacher_outputs_are_cached_and_reused_without_running_a_teacher(name, tmp_path, monkeypatch):
    for cap in results.ISA_CAPS:  # the float path asserted below is an uncapped one
        monkeypatch.delenv(cap, raising=False)
    splits = fold_splits()
    first = train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4)
    assert set(first.logits) == set(splits["train"]["id"]) | set(splits["validation"]["id"])  # never test ids
    assert first.meta["trained_on_speakers"] == ["Ses02_F", "Ses02_M", "Ses03_F"]
    assert first.meta["test_speakers"] == ["Ses01_F"] and 0 <= first.meta["test"]["ua"] <= 1
    # The test predictions are kept for scoring (per emotion carrier), and agree with the test WA recorded beside them.
    predictions = first.meta["test"]["predictions"]
    test_ids = list(splits["test"]["id"])
    assert list(predictions) == test_ids and set(predictions.values()) <= set(range(4))
    correct = [predictions[i] == label for i, label in zip(test_ids, splits["test"]["label"])]
    assert first.meta["test"]["wa"] == pytest.approx(sum(correct) / len(correct))
    # `emodistill-cache` sees it as an entry this version reads.
    [entry] = [e for e in scan_cache(tmp_path) if e.kind == "teacher"]
    assert entry.stale is None and first.meta["cache_version"] == CACHE_VERSION and entry.size > 0

    def no_teacher(*args, **kwargs):
        raise AssertionError("a teacher ran although its outputs were cached")

    monkeypatch.setattr(teacher_training, "fit", no_teacher)
    monkeypatch.setattr(teacher_training, "predict", no_teacher)
    second = train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4)
    for utterance, logits in first.logits.items():
        np.testing.assert_array_equal(second.logits[utterance], logits)
    # A changed teacher setting or fold is another cache entry: it must train again.
    with pytest.raises(AssertionError, match="a teacher ran"):
        train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4, seed=1)
    changed_fold = {**splits, "train": toy_split(["Ses02_F", "Ses02_M"])}
    with pytest.raises(AssertionError, match="a teacher ran"):
        train_teacher(name, changed_fold, SETTINGS, tmp_path, num_labels=4)
    # So is another float path: another thread count sums in another order.
    threads = torch.get_num_threads()
    assert first.meta["float_path"] == {
        "device": "cpu",
        "world_size": 1,
        "torch_threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": results.cpu_model(),
    }
    torch.set_num_threads(threads + 1)
    try:
        with pytest.raises(AssertionError, match="a teacher ran"):
            train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4)
    finally:
        torch.set_num_threads(threads)
    # Another instruction-set cap: oneDNN's kernels change while torch's reported capability does not.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(AssertionError, match="a teacher ran"):
        train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    # And so is another CPU with the same kernels (AMD and Intel AVX512 trained different prosodic teachers).
    monkeypatch.setattr(results, "cpu_model", lambda: "AuthenticAMD family 25 model 17 stepping 1: AMD EPYC 9R14")
    with pytest.raises(AssertionError, match="a teacher ran"):
        train_teacher(name, splits, SETTINGS, tmp_path, num_labels=4)


def test_the_cpu_is_named_by_vendor_family_model_and_stepping():
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R)"
    x86 += " Platinum 8480+\nstepping\t: 8\n\nprocessor\t: 1\nvendor_id\t: OtherVendor\n"
    assert results.describe_cpu(x86) == "GenuineIntel family 6 model 143 stepping 8: Intel(R) Xeon(R) Platinum 8480+"
    arm = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n"
    assert results.describe_cpu(arm) == "implementer 0x41 part 0xd0c"
    assert results.describe_cpu("") is None
    assert results.cpu_model()  # this machine's, whatever it is


def test_a_teacher_cannot_be_trained_on_the_test_speaker(tmp_path):
    splits = fold_splits()
    leaky = {**splits, "train": toy_split(["Ses02_F", "Ses01_F"])}
    with pytest.raises(TeacherLeakageError, match=r"test speaker\(s\) \['Ses01_F'\]"):
        train_teacher("prosodic", leaky, SETTINGS, tmp_path, num_labels=4)
    leaky_validation = {**splits, "validation": toy_split(["Ses01_F"])}
    with pytest.raises(TeacherLeakageError):
        train_teacher("linguistic", leaky_validation, SETTINGS, tmp_path, num_labels=4)
    assert not (tmp_path / "teachers").exists()


def test_attach_teacher_outputs_by_id(tmp_path):
    splits = fold_splits()
    result = train_teacher("prosodic", splits, SETTINGS, tmp_path, num_labels=4)
    shuffled = splits["train"].shuffle(seed=0)
    attached = attach_teacher_outputs(shuffled, {"prosodic": result})
    for row in attached.select(range(3)):
        np.testing.assert_allclose(row["prosodic_logits"], result.logits[row["id"]], rtol=1e-6)
        assert len(row["prosodic_embedding"]) == result.embedding_dim
    with pytest.raises(KeyError, match="no outputs for 4 utterances"):
        attach_teacher_outputs(splits["test"], {"prosodic": result})
