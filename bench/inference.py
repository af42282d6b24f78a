"""Inference speed: the pipeline against the raw model, and the audio-only student against the multimodal cascade.

1. `pipeline("audio-classification")` (`EmoDistillAudioClassificationPipeline`) against the raw model on the same clips:
   the raw side runs the feature extractor (normalisation + padding, which the model needs anyway) and the forward
   pass under `torch.no_grad()`, with the same batch size; throughput is seconds of audio per wall second, at batch
   size 1 and 8. Target: pipeline / raw >= 0.9.
2. The student alone against the cascade it replaces at inference: the same audio model **plus** eGeMAPS extraction
   (`data_scripts.egemaps.extract_egemaps`), the prosodic ResNet teacher on those descriptors and the MiniLM linguistic
   teacher on the transcript. A real cascade would also need ASR to get the transcript; it is **not** counted here, so
   the speed-up is a lower bound.
3. Real-time factor (compute seconds per audio second, batch size 1) of the default student (the bundled pretrained
   HuBERT's size, random weights) and of a hubert-base-sized one (random weights, `HubertConfig()` defaults, 95M parameters).

    python bench/inference.py
    python bench/inference.py --quick
"""

import tempfile

import numpy as np
import torch
from common import (
    LABELS,
    RATE,
    TEXTS,
    alternate,
    apply_threads,
    base_parser,
    ratio_summary,
    side_summary,
    write_result,
)
from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor, pipeline

from emodistill.data_scripts.egemaps import extract_egemaps
from emodistill.modeling_emodistill import EmoDistillConfig, EmoDistillForAudioClassification
from emodistill.trainers.pretraining import STUDENT_ARCHITECTURE
from emodistill.trainers.teachers import (
    DEFAULT_LINGUISTIC_BACKBONE,
    LinguisticTeacher,
    ProsodicResNetTeacher,
    ProsodicTeacherConfig,
)

BATCH_SIZES = (1, 8)
# (name, backbone configuration, number of clips, clip lengths in seconds, cycled)
SETTINGS = [
    ("default_student", STUDENT_ARCHITECTURE, 16, (2.0, 3.5, 5.0, 6.5)),
    ("hubert_base_size", {}, 8, (2.0, 3.5, 5.0, 6.5)),
]
QUICK_SETTINGS = [("default_student", STUDENT_ARCHITECTURE, 2, (1.0,))]


def clips(count: int, lengths: tuple[float, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        t = np.arange(int(lengths[i % len(lengths)] * RATE)) / RATE
        voice = np.sin(2 * np.pi * (120 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t) * (
            0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
        )
        out.append((0.3 * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
    return out


def save_student(backbone: dict, path: str, linguistic_dim: int, prosodic_dim: int) -> None:
    torch.manual_seed(0)
    config = EmoDistillConfig(
        **backbone,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        linguistic_embedding_dim=linguistic_dim,
        prosodic_embedding_dim=prosodic_dim,
    )
    EmoDistillForAudioClassification(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(path)


def measure(name, backbone, count, lengths, repetitions, teachers, tokenizer) -> dict:
    linguistic, prosodic = teachers
    audio = clips(count, lengths)
    audio_seconds = sum(a.size for a in audio) / RATE
    with tempfile.TemporaryDirectory() as path:
        save_student(backbone, path, linguistic.embedding_dim, prosodic.embedding_dim)
        classifier = pipeline("audio-classification", model=path)
    model, extractor = classifier.model, classifier.feature_extractor

    def raw(batch_size: int):
        def run():
            with torch.no_grad():
                for start in range(0, len(audio), batch_size):
                    inputs = extractor(
                        audio[start : start + batch_size], sampling_rate=RATE, padding=True, return_tensors="pt"
                    )
                    model(**inputs).logits.softmax(-1)

        return run

    def piped(batch_size: int):
        return lambda: classifier(audio, batch_size=batch_size)

    def cascade():
        with torch.no_grad():
            for i, waveform in enumerate(audio):
                inputs = extractor(waveform, sampling_rate=RATE, return_tensors="pt")
                model(**inputs)
                descriptors = torch.tensor(extract_egemaps(waveform, RATE)).unsqueeze(0)
                prosodic(features=descriptors)
                linguistic(**tokenizer(TEXTS[i % len(TEXTS)], return_tensors="pt"))

    result = {
        "setting": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "clips": count,
        "audio_seconds": audio_seconds,
        "pipeline_over_raw_throughput": {},
    }
    sides = {}
    for batch_size in BATCH_SIZES:
        sides[f"raw_bs{batch_size}"] = raw(batch_size)
        sides[f"pipeline_bs{batch_size}"] = piped(batch_size)
    sides["cascade_bs1"] = cascade
    times = alternate(sides, repetitions)
    result["sides"] = {
        side: {**side_summary(t), "audio_seconds_per_second": audio_seconds / np.median(t)}
        for side, t in times.items()
    }
    for batch_size in BATCH_SIZES:
        # throughput ratio = raw time / pipeline time
        result["pipeline_over_raw_throughput"][f"batch_size_{batch_size}"] = ratio_summary(
            times[f"raw_bs{batch_size}"], times[f"pipeline_bs{batch_size}"]
        )
    result["cascade_over_student_speedup"] = ratio_summary(times["cascade_bs1"], times["pipeline_bs1"])
    result["real_time_factor_bs1"] = float(np.median(times["pipeline_bs1"]) / audio_seconds)
    return result


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=7)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    settings = QUICK_SETTINGS if args.quick else SETTINGS
    repetitions = 2 if args.quick else args.repetitions
    linguistic = LinguisticTeacher.from_backbone(DEFAULT_LINGUISTIC_BACKBONE, num_labels=len(LABELS)).eval()
    prosodic = ProsodicResNetTeacher(ProsodicTeacherConfig(num_labels=len(LABELS))).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_LINGUISTIC_BACKBONE)
    results = []
    for name, backbone, count, lengths in settings:
        r = measure(name, backbone, count, lengths, repetitions, (linguistic, prosodic), tokenizer)
        results.append(r)
        ratios = r["pipeline_over_raw_throughput"]
        print(
            f"{name} ({r['parameters'] / 1e6:.1f}M params): pipeline/raw throughput "
            + ", ".join(f"bs{b} {ratios[f'batch_size_{b}']['median_ratio']:.3f}" for b in BATCH_SIZES)
            + f" (target >= 0.9); cascade/student time {r['cascade_over_student_speedup']['median_ratio']:.2f}x; "
            f"RTF {r['real_time_factor_bs1']:.4f}"
        )
    path = write_result(
        "inference",
        {
            "quick": args.quick,
            "repetitions": repetitions,
            "target": {"pipeline_over_raw_throughput": ">= 0.9"},
            "cascade_note": "cascade = student forward + eGeMAPS extraction + prosodic teacher + MiniLM linguistic "
            "teacher on the transcript; the ASR a real cascade needs for the transcript is not counted",
            "settings": results,
        },
        args.output,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
