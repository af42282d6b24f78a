"""Building the student and its inputs: a pretrained HuBERT or the small from-scratch default, crops, lengths."""

from collections.abc import Sequence

import numpy as np
from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

from emodistill.data_scripts.audio import SAMPLING_RATE
from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification

# A HuBERT-shaped student small enough to train from scratch on 2 CPU cores in minutes per fold: a 4-layer conv
# encoder with HuBERT's 320-sample hop (50 frames/s), then a 2-layer Transformer.
SMALL_STUDENT = dict(
    conv_dim=(32, 64, 64, 64),
    conv_stride=(10, 4, 4, 2),
    conv_kernel=(20, 8, 8, 4),
    feat_extract_norm="layer",
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    classifier_proj_size=64,
    layerdrop=0.0,
    mask_time_prob=0.05,
)


def small_student_config(**overrides) -> EmoDistillConfig:
    return EmoDistillConfig(**{**SMALL_STUDENT, **overrides})


def build_student(
    model_name_or_path: str | None,
    label_names: Sequence[str],
    *,
    linguistic_embedding_dim: int,
    prosodic_embedding_dim: int,
    freeze_feature_encoder: bool = True,
) -> tuple[EmoDistillForAudioClassification, Wav2Vec2FeatureExtractor]:
    """
    The student and its feature extractor.

    `model_name_or_path` is any HuBERT checkpoint (`facebook/hubert-base-ls960`, a local folder, ...), loaded as the
    paper does with a fresh classifier and projection heads; `None` builds the small default from scratch (whose
    feature encoder is then trained, since there is nothing pretrained to keep).
    """
    labels = dict(
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        linguistic_embedding_dim=linguistic_embedding_dim,
        prosodic_embedding_dim=prosodic_embedding_dim,
    )
    if model_name_or_path is None:
        model = EmoDistillForAudioClassification(small_student_config(**labels))
        extractor = Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=SAMPLING_RATE,
            padding_value=0.0,
            do_normalize=True,
            return_attention_mask=True,
        )
        return model, extractor
    model = EmoDistillForAudioClassification.from_pretrained(model_name_or_path, **labels)
    if freeze_feature_encoder:
        model.freeze_feature_encoder()
    extractor = AutoFeatureExtractor.from_pretrained(model_name_or_path)
    return model, extractor


def random_crop_transform(max_samples: int):
    """
    A `Dataset.set_transform` function that crops each waveform to at most `max_samples` at a random offset.

    Used on the training split only (evaluation sees full utterances). It draws from NumPy's global generator, which
    `Trainer` seeds and checkpoints, so a resumed run crops as the uninterrupted one would.
    """

    def crop(batch: dict) -> dict:
        waveforms = []
        for waveform in batch["input_values"]:
            waveform = np.asarray(waveform, dtype=np.float32)
            if len(waveform) > max_samples:
                start = np.random.randint(0, len(waveform) - max_samples + 1)
                waveform = waveform[start : start + max_samples]
            waveforms.append(waveform)
        return {**batch, "input_values": waveforms}

    return crop
