"""Configuration of the EmoDistill student: a HuBERT configuration plus the distillation heads.

This file ships to the hub next to the weights (``trust_remote_code``), so it imports only transformers,
huggingface_hub and the standard library.
"""

import copy
import shutil
from pathlib import Path

from huggingface_hub.dataclasses import strict
from transformers import HubertConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

POOLING_MODES = ("mean", "max")
# Hub users: `pipeline("audio-classification", model=<repo>, trust_remote_code=True)` reads this config.json entry and
# loads the class from `pipeline_emodistill.py`, which `save_pretrained` copies next to the weights.
PIPELINE_FILE = "pipeline_emodistill.py"
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_emodistill.EmoDistillAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


@strict
class EmoDistillConfig(HubertConfig):
    r"""
    Everything a [`HubertConfig`] holds (so the student loads any HuBERT checkpoint, e.g.
    `EmoDistillForAudioClassification.from_pretrained("facebook/hubert-base-ls960", num_labels=4)`), plus:

    linguistic_embedding_dim (`int`, *optional*, defaults to 768):
        Output size of the linguistic projection head z'_L: the linguistic teacher's embedding size
        (768 for BERT-base, 384 for MiniLM-L6).
    prosodic_embedding_dim (`int`, *optional*, defaults to 128):
        Output size of the prosodic projection head z'_P: the prosodic teacher's embedding size.
    projection_hidden_size (`int`, *optional*):
        Hidden width of the two-layer projection heads. Defaults to `hidden_size`.
    pooling_mode (`str`, *optional*, defaults to `"mean"`):
        How frame representations become one utterance vector: `"mean"` (masked mean over valid frames, as
        `HubertForSequenceClassification`) or `"max"` (masked max).
    """

    model_type = "emodistill"
    # Set by the installed `emodistill` package, which registers the pipeline on import: `transformers.pipeline`
    # refuses a config listing `custom_pipelines` unless `trust_remote_code=True`, so its configs do not list it.
    serves_pipeline_locally = False
    # The projections and hidden states are training signals, not predictions: `Trainer` keeps them out of
    # `compute_metrics`.
    keys_to_ignore_at_inference = ["linguistic_embedding", "prosodic_embedding", "hidden_states", "attentions"]

    linguistic_embedding_dim: int = 768
    prosodic_embedding_dim: int = 128
    projection_hidden_size: int | None = None
    pooling_mode: str = "mean"

    def __post_init__(self, **kwargs):
        # A HuBERT checkpoint's config.json says model_type="hubert"; loaded into this class it becomes a student.
        kwargs.pop("model_type", None)
        kwargs.pop("custom_pipelines", None)  # always `CUSTOM_PIPELINES`, see `to_dict`
        if not self.serves_pipeline_locally:
            self.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        if self.projection_hidden_size is None:
            self.projection_hidden_size = self.hidden_size
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Rejects bad head settings at construction, not at the first forward pass."""
        super().validate_architecture()
        if self.pooling_mode not in POOLING_MODES:
            raise ValueError(f"`pooling_mode` must be one of {POOLING_MODES}, got {self.pooling_mode!r}.")
        for name in ("linguistic_embedding_dim", "prosodic_embedding_dim", "projection_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")

    def to_dict(self) -> dict:
        # Written whoever saves (installed package or hub code): the saved folder then serves hub users too.
        return {**super().to_dict(), "custom_pipelines": copy.deepcopy(CUSTOM_PIPELINES)}

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        if self._auto_class is not None:  # the code files go with the weights: add the pipeline's (before a push)
            source = Path(__file__).with_name(PIPELINE_FILE)
            if source.is_file():
                Path(save_directory).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, Path(save_directory) / PIPELINE_FILE)
            else:
                logger.warning(f"{source} not found: {save_directory} will not serve the EmoDistill pipeline.")
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)


__all__ = ["EmoDistillConfig"]
