"""The student model: shapes, masked pooling, loading HuBERT weights, saving, freezing, config validation."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForAudioClassification, HubertConfig, HubertModel

from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification, EmoDistillOutput

from tiny_models import LINGUISTIC_DIM, PROSODIC_DIM, tiny_student, tiny_student_config


def test_forward_shapes_and_plain_ce_loss():
    model = tiny_student(attn_implementation="eager").eval()  # sdpa returns no attention weights
    waveform = torch.randn(3, 4000)
    labels = torch.tensor([0, 2, 3])
    out = model(waveform, labels=labels, output_hidden_states=True, output_attentions=True)
    assert isinstance(out, EmoDistillOutput)
    assert out.logits.shape == (3, 4)
    assert out.linguistic_embedding.shape == (3, LINGUISTIC_DIM)
    assert out.prosodic_embedding.shape == (3, PROSODIC_DIM)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert out.attentions[0].shape[:2] == (3, model.config.num_attention_heads)
    assert out.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(out.logits, labels).item())
    assert model(waveform).loss is None


@pytest.mark.parametrize("pooling_mode", ["mean", "max"])
def test_padding_does_not_change_the_prediction(pooling_mode):
    """Masked pooling ignores frames that only saw padding: a padded batch gives the unpadded utterance's output."""
    model = tiny_student(pooling_mode=pooling_mode).eval()
    short, long = torch.randn(1, 3000), torch.randn(1, 5000)
    batch = torch.zeros(2, 5000)
    batch[0, :3000], batch[1] = short, long
    mask = torch.zeros(2, 5000, dtype=torch.long)
    mask[0, :3000], mask[1] = 1, 1
    with torch.no_grad():
        batched = model(batch, attention_mask=mask)
        alone = model(short)
    torch.testing.assert_close(batched.logits[0], alone.logits[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched.linguistic_embedding[0], alone.linguistic_embedding[0], atol=1e-5, rtol=1e-4)


def test_weighted_layer_sum():
    model = tiny_student(use_weighted_layer_sum=True).eval()
    assert torch.allclose(model.layer_weights, torch.full((3,), 1 / 3))
    assert model(torch.randn(2, 4000)).logits.shape == (2, 4)


def test_loads_a_plain_hubert_checkpoint_as_backbone(tmp_path):
    """`from_pretrained(<any HuBERT checkpoint>, num_labels=...)` loads the backbone, as HubertForSequenceClassification does."""
    hubert_kwargs = tiny_student_config().to_dict()
    hubert_kwargs = {k: v for k, v in hubert_kwargs.items() if k in HubertConfig.__dataclass_fields__}
    hubert_kwargs.pop("model_type", None)
    torch.manual_seed(1)
    hubert = HubertModel(HubertConfig(**hubert_kwargs))
    hubert.save_pretrained(tmp_path / "hubert")
    model = EmoDistillForAudioClassification.from_pretrained(
        tmp_path / "hubert", num_labels=4, linguistic_embedding_dim=384, prosodic_embedding_dim=64
    )
    assert model.config.model_type == "emodistill" and model.config.num_labels == 4
    assert model.config.linguistic_embedding_dim == 384
    for name, tensor in hubert.state_dict().items():
        torch.testing.assert_close(model.hubert.state_dict()[name], tensor, msg=f"backbone weight {name} not loaded")
    assert model.linguistic_projection.out_proj.out_features == 384


def test_save_and_reload_round_trip_with_auto_classes(tmp_path):
    model = tiny_student().eval()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, EmoDistillConfig)
    assert config.id2label[1] == "angry" and config.auto_map["AutoModelForAudioClassification"].endswith(
        "EmoDistillForAudioClassification"
    )
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "modeling_emodistill.py").exists()
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is EmoDistillForAudioClassification
    waveform = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(waveform).logits, model(waveform).logits)


def test_freeze_feature_encoder():
    model = tiny_student()
    model.freeze_feature_encoder()
    assert not any(p.requires_grad for p in model.hubert.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.linguistic_projection.parameters())
    model(torch.randn(2, 4000), labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is None for p in model.hubert.feature_extractor.parameters())


def test_config_validation_and_labels_out_of_range():
    with pytest.raises(Exception, match="pooling_mode"):
        tiny_student_config(pooling_mode="attention")
    with pytest.raises(Exception, match="prosodic_embedding_dim"):
        tiny_student_config(prosodic_embedding_dim=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        tiny_student()(torch.randn(1, 4000), labels=torch.tensor([7]))
