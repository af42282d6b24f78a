"""Building the student: any HuBERT checkpoint (a hub id, a local folder, or the one this package ships) with
EmoDistill's classifier and projection heads."""

from collections.abc import Sequence
from pathlib import Path

from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor
from transformers.utils import logging as transformers_logging

import emodistill.checkpoints
from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification

# The HuBERT pretrained by `emodistill-pretrain-student` on unlabelled synthetic speech (see its README.md): the
# embedded default's student, shipped with the package because no pretrained speech model can be downloaded offline.
BUNDLED_STUDENT = "emodistill-hubert-synthetic"
BUNDLED_STUDENT_DIR = Path(emodistill.checkpoints.__file__).resolve().parent / "hubert-synthetic"


def resolve_student(name_or_path: str) -> str:
    """What `from_pretrained` loads for a `--student_model_name_or_path`: the bundled folder for its name, anything
    else (a hub id, a local folder) as given."""
    if name_or_path != BUNDLED_STUDENT:
        return name_or_path
    if not (BUNDLED_STUDENT_DIR / "config.json").is_file():
        # Otherwise transformers would take the missing folder for a malformed hub id.
        raise FileNotFoundError(
            f"The bundled student {BUNDLED_STUDENT} is missing from {BUNDLED_STUDENT_DIR} (an install without package "
            f"data?). Reinstall EmoDistill, or rebuild it: emodistill-pretrain-student --output_dir {BUNDLED_STUDENT_DIR}"
        )
    return str(BUNDLED_STUDENT_DIR)


def build_student(
    model_name_or_path: str,
    label_names: Sequence[str],
    *,
    linguistic_embedding_dim: int,
    prosodic_embedding_dim: int,
    freeze_feature_encoder: bool = True,
    use_weighted_layer_sum: bool = False,
    normalize_waveform: bool | None = None,
    config_overrides: dict | None = None,
) -> tuple[EmoDistillForAudioClassification, Wav2Vec2FeatureExtractor]:
    """
    The student and its feature extractor, loaded as the paper loads `facebook/hubert-base-ls960`: the checkpoint's
    HuBERT weights, fresh classifier and projection heads sized for the teachers' embeddings, and the checkpoint's
    own feature extractor (which decides whether the model gets an attention mask), with `do_normalize` replaced by
    `normalize_waveform` when that is given (the fold model saves it: the pipeline then reads audio the same way).
    `config_overrides` replace values of the checkpoint's config (fine-tuning dropouts, e.g.
    `{"activation_dropout": 0.0}`); the saved fold model's config carries them.
    """
    config_overrides = config_overrides or {}
    unknown = sorted(set(config_overrides) - set(EmoDistillConfig().to_dict()))
    if unknown:  # from_pretrained would silently add them to the config as unused attributes
        raise ValueError(f"{unknown} are not fields of a HuBERT config: nothing to override.")
    path = resolve_student(model_name_or_path)
    # The fresh heads are expected: transformers' table of "MISSING" weights would be noise in every fold's log. What
    # must not be missing (the HuBERT itself) is checked below.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, loading = EmoDistillForAudioClassification.from_pretrained(
            path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            linguistic_embedding_dim=linguistic_embedding_dim,
            prosodic_embedding_dim=prosodic_embedding_dim,
            use_weighted_layer_sum=use_weighted_layer_sum,
            output_loading_info=True,
            **config_overrides,
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    # `masked_spec_embed` exists only in checkpoints pretrained with masking; everything else must come from `path`.
    untrained = sorted(
        k for k in loading["missing_keys"] if k.startswith("hubert.") and not k.endswith("masked_spec_embed")
    )
    if untrained:
        raise ValueError(
            f"{model_name_or_path} holds no weights for {len(untrained)} HuBERT parameters (e.g. {untrained[:3]}): "
            "the student would start from random weights. Is it a HuBERT checkpoint?"
        )
    if freeze_feature_encoder:
        model.freeze_feature_encoder()
    extractor = AutoFeatureExtractor.from_pretrained(path)
    if normalize_waveform is not None:
        extractor.do_normalize = normalize_waveform
    return model, extractor
