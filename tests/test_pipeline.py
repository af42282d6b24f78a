"""A saved student served by `pipeline("audio-classification")`: installed package, and hub user with remote code."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import pipeline

from tiny_models import BLOCK_PROJECT_IMPORTS, LABELS, feature_extractor

SHORT_CLIP = 100  # samples: shorter than the tiny student's receptive field (148), which the pipeline pads up to


def expected_scores(path, waveform):
    """The model's probabilities by label, the input padded at the end to the receptive field (the pipeline's rule)."""
    from emodistill.modeling_emodistill import EmoDistillForAudioClassification
    from emodistill.modeling_emodistill.pipeline_emodistill import receptive_field

    model = EmoDistillForAudioClassification.from_pretrained(path).eval()
    inputs = feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
    missing = max(0, receptive_field(model.config.conv_kernel, model.config.conv_stride) - waveform.size)
    inputs = {
        "input_values": torch.nn.functional.pad(inputs["input_values"], (0, missing)),
        "attention_mask": torch.nn.functional.pad(inputs["attention_mask"], (0, missing), value=1),
    }
    with torch.no_grad():
        probabilities = model(**inputs).logits.softmax(-1)[0]
    return {LABELS[i]: p.item() for i, p in enumerate(probabilities)}


def assert_expected(predictions, expected):
    assert {p["label"] for p in predictions} == set(LABELS)
    for p in predictions:
        assert p["score"] == pytest.approx(expected[p["label"]], rel=1e-4)


def test_installed_package_pipeline(saved_student):
    waveform = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    classifier = pipeline("audio-classification", model=str(saved_student))
    predictions = classifier(waveform, top_k=4)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, rel=1e-5)
    assert_expected(predictions, expected_scores(saved_student, waveform))
    assert [p["score"] for p in predictions] == sorted((p["score"] for p in predictions), reverse=True)
    short = waveform[:SHORT_CLIP]
    assert_expected(classifier(short, top_k=4), expected_scores(saved_student, short))


HUB_USER = BLOCK_PROJECT_IMPORTS + textwrap.dedent(
    """
    import numpy as np
    from transformers import pipeline

    try:
        import emodistill.modeling_emodistill  # noqa: F401
        raise SystemExit("the project is importable")
    except ImportError:
        pass
    classifier = pipeline("audio-classification", model=sys.argv[1], trust_remote_code=True)
    waveform = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    predictions = classifier(waveform, top_k=4)
    print(json.dumps({
        "predictions": predictions,
        "short_clip": classifier(waveform[: int(sys.argv[2])], top_k=4),
        "model_module": type(classifier.model).__module__,
        "project_modules": sorted(m for m in sys.modules if m.startswith("emodistill")),
    }))
    """
)


def test_hub_user_pipeline_with_remote_code_cannot_import_the_project(saved_student, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", HUB_USER, str(saved_student), str(SHORT_CLIP)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    assert report["model_module"].startswith("transformers_modules.")
    waveform = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    assert_expected(report["predictions"], expected_scores(saved_student, waveform))
    assert_expected(report["short_clip"], expected_scores(saved_student, waveform[:SHORT_CLIP]))
