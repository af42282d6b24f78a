"""The EmoDistill student model. Importing this package registers it with the transformers Auto classes and pipeline."""

from transformers import AutoConfig, AutoModelForAudioClassification
from transformers.pipelines import PIPELINE_REGISTRY, AudioClassificationPipeline

from .configuration_emodistill import EmoDistillConfig
from .modeling_emodistill import EmoDistillForAudioClassification, EmoDistillOutput, EmoDistillPreTrainedModel
from .pipeline_emodistill import EmoDistillAudioClassificationPipeline

# Installed users: `AutoConfig` / `AutoModelForAudioClassification` / `pipeline("audio-classification")` resolve
# `model_type="emodistill"` to the local classes, no `trust_remote_code` needed.
AutoConfig.register(EmoDistillConfig.model_type, EmoDistillConfig, exist_ok=True)
AutoModelForAudioClassification.register(EmoDistillConfig, EmoDistillForAudioClassification, exist_ok=True)
# Hub users: `save_pretrained` writes `auto_map` and `custom_pipelines`, and copies the three code files next to the
# weights (the pipeline file: `EmoDistillConfig.save_pretrained`).
EmoDistillConfig.register_for_auto_class()
EmoDistillForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
EmoDistillConfig.serves_pipeline_locally = True


class AudioClassificationPipelineForModelType(AudioClassificationPipeline):
    """
    What `pipeline("audio-classification")` instantiates once this package is imported: the EmoDistill pipeline for
    EmoDistill models, and for every other model exactly the stock `AudioClassificationPipeline` (built with the same
    arguments and returned as is), so the task behaves as before for them.

    transformers picks a task's pipeline class per task, not per model type, and a config's `custom_pipelines`
    entry is only honoured with `trust_remote_code=True`; this dispatch is what lets installed users call
    `pipeline("audio-classification", model=<student dir>)` with no extra argument.
    """

    def __new__(cls, *args, **kwargs):
        model = kwargs["model"] if "model" in kwargs else args[0]
        is_emodistill = getattr(model.config, "model_type", None) == EmoDistillConfig.model_type
        pipeline_class = EmoDistillAudioClassificationPipeline if is_emodistill else AudioClassificationPipeline
        return pipeline_class(*args, **kwargs)  # not an instance of `cls`: Python does not call `__init__` again


PIPELINE_REGISTRY.supported_tasks["audio-classification"] = {
    **PIPELINE_REGISTRY.supported_tasks["audio-classification"],
    "impl": AudioClassificationPipelineForModelType,
}

__all__ = [
    "EmoDistillAudioClassificationPipeline",
    "EmoDistillConfig",
    "EmoDistillForAudioClassification",
    "EmoDistillOutput",
    "EmoDistillPreTrainedModel",
]
