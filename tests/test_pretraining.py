"""The student's pretraining: MFCC units, k-means, the masked-unit and CTC losses, the recipe end to end (quick mode),
and the checkpoint's hub layout, loaded through the same path as `facebook/hubert-base-ls960`."""

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel

from emodistill.data_scripts.unlabelled_speech import (
    emotion_corpus_words,
    generate_unlabelled_speech,
    read_unlabelled_manifest,
    vocabulary,
    voices,
)
from emodistill.trainers import pretraining
from emodistill.trainers import student as student_module
from emodistill.trainers.pretraining import (
    HubertForPretraining,
    HubertPretrainingConfig,
    PretrainingCollator,
    assign_units,
    kmeans,
    mfcc_frames,
    student_feature_extractor,
)
from emodistill.trainers.student import BUNDLED_STUDENT, BUNDLED_STUDENT_DIR, build_student

TINY = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    conv_dim=(8, 8, 8, 8),
    conv_stride=(10, 4, 4, 2),
    conv_kernel=(20, 8, 8, 4),
    num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2,
    feat_extract_norm="layer",
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
)


def test_unlabelled_corpus_shares_no_word_with_the_emotion_corpus_and_is_deterministic(tmp_path):
    words = set(vocabulary())
    assert len(words) > 10_000 and not words & emotion_corpus_words()
    assert {"furious", "heartbroken", "report", "drawer"} <= emotion_corpus_words()
    assert "en-us+f2" not in voices() and "en-us+f1" in voices()  # the actors' own voices are left out
    first = generate_unlabelled_speech(tmp_path / "a", num_utterances=6, seed=3)
    second = generate_unlabelled_speech(tmp_path / "b", num_utterances=6, seed=3)
    rows = read_unlabelled_manifest(first)
    assert rows == read_unlabelled_manifest(second) and len(rows) == 6
    assert (first / rows[0]["file"]).read_bytes() == (second / rows[0]["file"]).read_bytes()
    for row in rows:
        assert set(row) == {"id", "file", "text", "phonemes", "speech"} and "label" not in row and "emotion" not in row
        assert row["phonemes"] and not any(p.startswith(("'", ",")) for p in row["phonemes"])
        assert not set(row["text"].lower().strip(".").split()) & emotion_corpus_words()


def test_by_default_each_unlabelled_corpus_has_its_own_folder_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(pretraining, "DEFAULT_CACHE_DIR", str(tmp_path))
    waveforms, _, config = pretraining.load_corpus(pretraining.PretrainingArguments(quick=True))
    quick = tmp_path / "pretraining_corpora" / "num_utterances_40_seed_0" / "unlabelled_speech" / "config.json"
    assert len(waveforms) == config["num_utterances"] == 40 and quick.exists()
    written = quick.stat().st_mtime_ns
    waveforms, _, _ = pretraining.load_corpus(pretraining.PretrainingArguments(num_utterances=5))
    assert len(waveforms) == 5 and (tmp_path / "pretraining_corpora" / "num_utterances_5_seed_0").is_dir()
    assert quick.stat().st_mtime_ns == written  # the other size went beside it


def test_mfcc_frames_match_the_model_frame_rate():
    waveform = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    features = mfcc_frames(waveform)
    # Kaldi frames: 1 + (16000 - 400) // 160 = 98 at 100 Hz, every second one kept: 49 at the model's 50 Hz.
    assert features.shape == (49, 39)
    model = HubertForPretraining(HubertPretrainingConfig(**TINY))
    assert abs(int(model._get_feat_extract_output_lengths(16000)) - len(features)) <= 1


def test_kmeans_recovers_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=generator) for c in centres])
    found = kmeans(points, 3, seed=0)
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.2
    units = assign_units(points, found)
    assert len(set(units[:50].tolist())) == 1 and len(set(units.tolist())) == 3


def test_masked_unit_loss_counts_masked_frames_only():
    torch.manual_seed(0)
    model = HubertForPretraining(HubertPretrainingConfig(**TINY, num_units=5, unit_embedding_dim=4)).eval()
    input_values = torch.randn(1, 16000)
    frames = int(model._get_feat_extract_output_lengths(16000))
    labels = torch.randint(0, 5, (1, frames))
    mask = torch.zeros(1, frames, dtype=torch.bool)
    mask[0, 3:8] = True
    loss = model(input_values, mask_time_indices=mask, unit_labels=labels).unit_loss
    # By hand: cosine logits / 0.1 of the masked frames against the unit embeddings.
    hidden = model.hubert(input_values, mask_time_indices=mask)[0][0, 3:8]
    logits = F.normalize(model.final_proj(hidden), dim=-1) @ F.normalize(model.unit_embeddings, dim=-1).T / 0.1
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels[0, 3:8]))
    labels[0, :3] = (labels[0, :3] + 1) % 5  # unmasked frames do not count
    torch.testing.assert_close(model(input_values, mask_time_indices=mask, unit_labels=labels).unit_loss, loss)


def test_collator_never_masks_or_scores_padding():
    np.random.seed(0)
    model = HubertForPretraining(HubertPretrainingConfig(**TINY, num_units=5))
    collator = PretrainingCollator(student_feature_extractor(), model, mask_prob=0.9, mask_length=2)
    rows = [
        {"input_values": np.random.randn(4000).astype(np.float32), "unit_labels": np.zeros(12, dtype=int)},
        {"input_values": np.random.randn(16000).astype(np.float32), "unit_labels": np.ones(49, dtype=int)},
    ]
    batch = collator(rows)
    short_frames = int(model._get_feat_extract_output_lengths(4000))
    assert not batch["mask_time_indices"][0, short_frames:].any() and batch["mask_time_indices"][0].any()
    # The labels are cut or padded to the model's own frames (48 for 1 s, one fewer than the MFCC frames).
    assert batch["unit_labels"].shape[1] == int(model._get_feat_extract_output_lengths(16000)) == 48
    assert (batch["unit_labels"][0, 12:] == -100).all() and (batch["unit_labels"][1] == 1).all()


@pytest.mark.parametrize("objective", pretraining.OBJECTIVES)
def test_quick_recipe_writes_a_hub_layout_checkpoint_the_student_loads(objective, tmp_path):
    output = tmp_path / "checkpoint"
    pretraining.main(
        ["--output_dir", str(output), "--objective", objective, "--quick", "--corpus_dir", str(tmp_path / "corpus")]
    )
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "hubert" and config["architectures"] == ["HubertModel"]
    assert "num_units" not in config and "num_phonemes" not in config  # a plain HubertConfig
    preprocessor = json.loads((output / "preprocessor_config.json").read_text())
    assert (
        preprocessor["feature_extractor_type"] == "Wav2Vec2FeatureExtractor" and preprocessor["sampling_rate"] == 16000
    )
    summary = json.loads((output / "pretraining.json").read_text())
    assert summary["objective"] == objective and np.isfinite(summary["train_loss"])
    for text in (output / "pretraining.json").read_text(), (output / "README.md").read_text():
        assert not re.search(r"(^|[\s\"'(])/\w", text), "a machine path in a shipped folder"
    assert (output / "README.md").read_text().startswith("---")
    HubertModel.from_pretrained(output)  # what any HuBERT user does with a hub checkpoint
    student, extractor = build_student(str(output), ["a", "b"], linguistic_embedding_dim=6, prosodic_embedding_dim=4)
    reference = HubertModel.from_pretrained(output).state_dict()
    for name, tensor in student.hubert.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], msg=name)
    assert extractor.return_attention_mask


def test_the_bundled_student_is_a_small_hub_layout_checkpoint():
    size = sum(path.stat().st_size for path in BUNDLED_STUDENT_DIR.iterdir())
    assert size < 20 * 2**20
    config = json.loads((BUNDLED_STUDENT_DIR / "config.json").read_text())
    assert config["model_type"] == "hubert" and config["feat_extract_norm"] == "layer"
    summary = json.loads((BUNDLED_STUDENT_DIR / "pretraining.json").read_text())
    assert "emodistill-pretrain-student" in (BUNDLED_STUDENT_DIR / "README.md").read_text()
    assert summary["corpus"]["num_utterances"] >= 1000
    student, extractor = build_student(
        BUNDLED_STUDENT, ["a", "b", "c", "d"], linguistic_embedding_dim=8, prosodic_embedding_dim=8
    )
    assert student.config.hidden_size == config["hidden_size"]
    # It normalises each utterance, as it was pretrained: an utterance 12 dB louder is the same input.
    waveform = np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.05
    louder = extractor(waveform * 4, sampling_rate=16_000).input_values[0]
    assert extractor.do_normalize and np.allclose(
        extractor(waveform, sampling_rate=16_000).input_values[0], louder, atol=1e-4
    )
    # `normalize_waveform=False` (the job's --normalize_waveform false) hands the student the waveform as it is.
    _, raw = build_student(
        BUNDLED_STUDENT, ["a", "b"], linguistic_embedding_dim=8, prosodic_embedding_dim=8, normalize_waveform=False
    )
    assert not raw.do_normalize and np.array_equal(
        raw(waveform * 4, sampling_rate=16_000).input_values[0], waveform * 4
    )


def test_config_overrides_set_the_students_dropouts_and_unknown_names_are_refused(tmp_path):
    student, _ = build_student(
        BUNDLED_STUDENT, ["a", "b"], linguistic_embedding_dim=8, prosodic_embedding_dim=8,
        config_overrides={"activation_dropout": 0.0, "attention_dropout": 0.0},
    )  # fmt: skip
    shipped = json.loads((BUNDLED_STUDENT_DIR / "config.json").read_text())
    assert shipped["activation_dropout"] > 0 and shipped["hidden_dropout"] > 0
    layer = student.hubert.encoder.layers[0]
    assert layer.feed_forward.intermediate_dropout.p == 0.0 and layer.attention.dropout == 0.0
    assert layer.dropout.p == shipped["hidden_dropout"]  # not overridden: the checkpoint's
    student.save_pretrained(tmp_path)  # the fold model keeps the values it was trained with
    assert json.loads((tmp_path / "config.json").read_text())["activation_dropout"] == 0.0
    with pytest.raises(ValueError, match=r"\['activation_dropot'\] are not fields of a HuBERT config"):
        build_student(
            BUNDLED_STUDENT, ["a"], linguistic_embedding_dim=8, prosodic_embedding_dim=8,
            config_overrides={"activation_dropot": 0.0},
        )  # fmt: skip


def test_a_missing_bundled_student_names_its_folder_and_the_rebuild_command(tmp_path, monkeypatch):
    monkeypatch.setattr(student_module, "BUNDLED_STUDENT_DIR", tmp_path / "hubert-synthetic")
    with pytest.raises(FileNotFoundError, match="hubert-synthetic.*emodistill-pretrain-student --output_dir"):
        student_module.resolve_student(BUNDLED_STUDENT)
    assert student_module.resolve_student("facebook/hubert-base-ls960") == "facebook/hubert-base-ls960"


def test_a_checkpoint_without_hubert_weights_is_refused(tmp_path):
    HubertModel(HubertConfig(**TINY)).save_pretrained(tmp_path / "ok")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    from safetensors.torch import save_file

    save_file({"unrelated.weight": torch.zeros(1)}, bad / "model.safetensors")
    student_feature_extractor().save_pretrained(bad)
    with pytest.raises(ValueError, match="holds no weights for .* HuBERT parameters"):
        build_student(str(bad), ["a", "b"], linguistic_embedding_dim=4, prosodic_embedding_dim=4)
