"""Model card templates, filled in by `emodistill.trainers.reporting` with `huggingface_hub`'s card API."""
