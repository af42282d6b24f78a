"""The EmoDistill student model. Importing this package registers it with the transformers Auto classes."""

from transformers import AutoConfig, AutoModelForAudioClassification

from .configuration_emodistill import EmoDistillConfig
from .modeling_emodistill import EmoDistillForAudioClassification, EmoDistillOutput, EmoDistillPreTrainedModel

# Installed users: `AutoConfig` / `AutoModelForAudioClassification` / `pipeline("audio-classification")` resolve
# `model_type="emodistill"` to the local classes, no `trust_remote_code` needed.
AutoConfig.register(EmoDistillConfig.model_type, EmoDistillConfig, exist_ok=True)
AutoModelForAudioClassification.register(EmoDistillConfig, EmoDistillForAudioClassification, exist_ok=True)
# Hub users: `save_pretrained` writes `auto_map` and copies the two code files next to the weights.
EmoDistillConfig.register_for_auto_class()
EmoDistillForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = ["EmoDistillConfig", "EmoDistillForAudioClassification", "EmoDistillOutput", "EmoDistillPreTrainedModel"]
