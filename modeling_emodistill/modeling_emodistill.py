"""The EmoDistill student: HuBERT -> masked pooling -> classifier, plus the linguistic and prosodic projection heads.

At inference only this model runs (audio in, emotion logits out). The projection heads z'_L and z'_P exist so that
training can pull the student's utterance representation towards the frozen teachers' embeddings (Eq. (3)-(4) of
the paper); `trainers/losses.py` holds the distillation loss itself.

This file ships to the hub next to the weights (``trust_remote_code``): it imports only torch, transformers and its
sibling configuration file.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput
from transformers.models.hubert.modeling_hubert import HubertModel, HubertPreTrainedModel

from .configuration_emodistill import EmoDistillConfig


@dataclass
class EmoDistillOutput(ModelOutput):
    """
    Output of [`EmoDistillForAudioClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Plain cross-entropy of the logits; the distillation terms are added by `EmoDistillTrainer`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Emotion class scores (before softmax).
        linguistic_embedding (`torch.FloatTensor` of shape `(batch_size, linguistic_embedding_dim)`):
            z'_L, the linguistic projection of the pooled utterance representation.
        prosodic_embedding (`torch.FloatTensor` of shape `(batch_size, prosodic_embedding_dim)`):
            z'_P, the prosodic projection of the pooled utterance representation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            HuBERT's hidden states, each `(batch_size, frames, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            HuBERT's attention weights, each `(batch_size, num_heads, frames, frames)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    linguistic_embedding: torch.FloatTensor | None = None
    prosodic_embedding: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class EmoDistillProjectionHead(nn.Module):
    """Two-layer MLP from the pooled representation `(batch, hidden_size)` to a teacher's embedding space."""

    def __init__(self, hidden_size: int, projection_hidden_size: int, output_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, projection_hidden_size)
        self.activation = nn.GELU()
        self.out_proj = nn.Linear(projection_hidden_size, output_size)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.activation(self.dense(pooled)))


class EmoDistillPreTrainedModel(HubertPreTrainedModel):
    config_class = EmoDistillConfig
    config: EmoDistillConfig
    base_model_prefix = "hubert"
    main_input_name = "input_values"


class EmoDistillForAudioClassification(EmoDistillPreTrainedModel):
    """
    Audio-only EmoDistill student. `forward(input_values, attention_mask)` returns an [`EmoDistillOutput`]; with
    `labels` it also returns the plain cross-entropy loss, so the model trains with a stock `Trainer` too.
    """

    def __init__(self, config: EmoDistillConfig):
        super().__init__(config)
        if getattr(config, "add_adapter", False):
            raise ValueError("EmoDistill does not support HuBERT adapters (config.add_adapter=True).")
        self.hubert = HubertModel(config)
        if config.use_weighted_layer_sum:
            num_layers = config.num_hidden_layers + 1  # transformer layers + the feature projection
            self.layer_weights = nn.Parameter(torch.ones(num_layers) / num_layers)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.linguistic_projection = EmoDistillProjectionHead(
            config.hidden_size, config.projection_hidden_size, config.linguistic_embedding_dim
        )
        self.prosodic_projection = EmoDistillProjectionHead(
            config.hidden_size, config.projection_hidden_size, config.prosodic_embedding_dim
        )
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is self and hasattr(self, "layer_weights"):
            init.constant_(self.layer_weights, 1.0 / (self.config.num_hidden_layers + 1))

    def freeze_feature_encoder(self):
        """Stops gradient updates of the convolutional feature encoder (common when fine-tuning HuBERT)."""
        self.hubert.feature_extractor._freeze_parameters()

    def pool(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """
        Pools frames into one vector per utterance, ignoring the frames that only saw padding.

        Args:
            hidden_states: `(batch, frames, hidden_size)`.
            attention_mask: `(batch, samples)` over the *waveform*, 1 for real samples, or `None` (all frames valid).
        Returns:
            `(batch, hidden_size)`.
        """
        if attention_mask is None:
            frame_mask = hidden_states.new_ones(hidden_states.shape[:2], dtype=torch.bool)
        else:
            frame_mask = self._get_feature_vector_attention_mask(hidden_states.shape[1], attention_mask).bool()
        mask = frame_mask.unsqueeze(-1)
        if self.config.pooling_mode == "max":
            return hidden_states.masked_fill(~mask, torch.finfo(hidden_states.dtype).min).amax(dim=1)
        summed = (hidden_states * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1).to(hidden_states.dtype)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> EmoDistillOutput | tuple:
        r"""
        Args:
            input_values: `(batch, samples)` raw 16 kHz waveform, normalised by the saved feature extractor.
            attention_mask: `(batch, samples)`, 1 for real samples and 0 for padding.
            labels: `(batch,)` class indices in `[0, num_labels)`.
        """
        output_hidden_states = bool(output_hidden_states) or self.config.use_weighted_layer_sum
        outputs = self.hubert(
            input_values,
            attention_mask=attention_mask,
            output_attentions=bool(output_attentions),
            output_hidden_states=output_hidden_states,
        )
        if self.config.use_weighted_layer_sum:
            stacked = torch.stack(outputs.hidden_states, dim=1)  # (batch, layers, frames, hidden)
            weights = nn.functional.softmax(self.layer_weights, dim=-1).view(1, -1, 1, 1)
            hidden_states = (stacked * weights).sum(dim=1)
        else:
            hidden_states = outputs.last_hidden_state

        pooled = self.pool(hidden_states, attention_mask)
        logits = self.classifier(self.projector(pooled))

        loss = None
        if labels is not None:
            if labels.min() < 0 or labels.max() >= self.config.num_labels:
                raise ValueError(
                    f"labels must lie in [0, {self.config.num_labels}), got values from {labels.min().item()} "
                    f"to {labels.max().item()}."
                )
            loss = nn.functional.cross_entropy(logits.float(), labels.view(-1))

        output = EmoDistillOutput(
            loss=loss,
            logits=logits,
            linguistic_embedding=self.linguistic_projection(pooled),
            prosodic_embedding=self.prosodic_projection(pooled),
            hidden_states=outputs.hidden_states if output_hidden_states else None,
            attentions=outputs.attentions if output_attentions else None,
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = ["EmoDistillForAudioClassification", "EmoDistillOutput", "EmoDistillPreTrainedModel"]
