"""`emodistill-predict` on files and folders of what users actually have."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from emodistill.modeling_emodistill import EmoDistillForAudioClassification
from emodistill.trainers.predict import main

from tiny_models import LABELS, feature_extractor, tiny_student

RATE = 16_000


@pytest.fixture(scope="module")
def saved_student(tmp_path_factory):
    path = tmp_path_factory.mktemp("student")
    tiny_student().save_pretrained(path)
    feature_extractor().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(saved_student):
    return EmoDistillForAudioClassification.from_pretrained(saved_student).eval()


def probabilities(model, waveform: np.ndarray) -> torch.Tensor:
    """The model's class probabilities `(num_labels,)` of one 16 kHz mono float waveform, no pipeline involved."""
    inputs = feature_extractor()(waveform, sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)[0]


def speech_like(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Band-limited noise with a slow envelope, amplitude well inside [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    carrier = np.sin(2 * np.pi * 220 * t) + 0.3 * rng.standard_normal(t.size)
    return (0.3 * carrier * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_cli_json_in_a_subprocess(saved_student, tmp_path, model):
    waveform = speech_like(3.0, rate=44_100)
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.stack([waveform, waveform], axis=1), 44_100, subtype="PCM_16")
    flac = tmp_path / "short.flac"
    sf.write(flac, speech_like(1.0), RATE)
    command = [sys.executable, "-m", "emodistill.trainers.predict", "--model", str(saved_student), "--json"]
    result = subprocess.run([*command, "--top_k", "2", str(wav), str(flac)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [str(wav), str(flac)]
    assert all(len(r["predictions"]) == 2 for r in report)
    decoded, rate = sf.read(wav, dtype="float32")
    mono = torchaudio.functional.resample(torch.from_numpy(decoded.mean(1)), rate, RATE).numpy()
    expected = probabilities(model, mono)
    for p in report[0]["predictions"]:
        assert p["score"] == pytest.approx(expected[LABELS.index(p["label"])].item(), rel=1e-3)


def test_cli_text_output_and_unreadable_file(saved_student, tmp_path, capsys):
    flac = tmp_path / "short.flac"
    sf.write(flac, speech_like(1.0), RATE)
    main(["--model", str(saved_student), str(flac)])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{flac}: ") and len(line.split(", ")) == len(LABELS)

    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(saved_student), "--json", str(flac), str(broken)])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "broken.wav" in captured.err and captured.out == ""
