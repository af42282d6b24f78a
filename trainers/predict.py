"""`emodistill-predict`: emotion scores of audio files with a saved EmoDistill student.

    emodistill-predict --model path/to/student happy.wav call.flac [--json] [--top_k 2] [--chunk_length_s 10]

Files are read with soundfile (WAV, FLAC, OGG, ... at any rate, mono or multi-channel) and classified with
`pipeline("audio-classification")`, i.e. `EmoDistillAudioClassificationPipeline`: channels averaged, resampled to
16 kHz, long recordings scored as the mean of overlapping windows' probabilities. A file that cannot be read stops
the run with an error naming it (exit status 1); nothing is skipped silently.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from transformers import pipeline

from emodistill.modeling_emodistill import EmoDistillAudioClassificationPipeline
from emodistill.modeling_emodistill.pipeline_emodistill import DEFAULT_CHUNK_LENGTH_S, DEFAULT_STRIDE_LENGTH_S


def read_audio(path: str | Path) -> dict:
    """`{"raw": (samples,) or (samples, channels) float32, "sampling_rate": int}`; `ValueError` naming the file."""
    try:
        waveform, sampling_rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise ValueError(f"Cannot read audio file {str(path)!r}: {error}") from error
    if waveform.size == 0:
        raise ValueError(f"Audio file {str(path)!r} holds no samples.")
    return {"raw": np.ascontiguousarray(waveform), "sampling_rate": int(sampling_rate)}


def predict(
    classifier: EmoDistillAudioClassificationPipeline, files: Sequence[str | Path], **call_kwargs
) -> list[dict]:
    """`[{"file": path, "predictions": [{"label", "score"}, ...]}, ...]` in the order of `files`."""
    results = []
    for path in files:
        audio = read_audio(path)
        try:
            predictions = classifier(audio, **call_kwargs)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        results.append({"file": str(path), "predictions": predictions})
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emodistill-predict", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", help="audio files (anything libsndfile reads: wav, flac, ogg, ...)")
    parser.add_argument("--model", required=True, help="folder (or hub id) of a saved EmoDistill student")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--top_k", type=int, default=None, help="labels per file (default: all)")
    parser.add_argument(
        "--chunk_length_s", type=float, default=DEFAULT_CHUNK_LENGTH_S, help="window length; 0 disables windows"
    )
    parser.add_argument(
        "--stride_length_s", type=float, default=DEFAULT_STRIDE_LENGTH_S, help="overlap of consecutive windows"
    )
    parser.add_argument("--batch_size", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--device", default=None, help='torch device, e.g. "cpu" or "cuda:0" (default: cpu)')
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top_k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    classifier = pipeline("audio-classification", model=args.model, device=args.device)
    try:
        results = predict(
            classifier,
            args.files,
            top_k=args.top_k,
            chunk_length_s=args.chunk_length_s,
            stride_length_s=args.stride_length_s,
            batch_size=args.batch_size,
        )
    except ValueError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for result in results:
        scores = ", ".join(f"{p['label']} {p['score']:.3f}" for p in result["predictions"])
        print(f"{result['file']}: {scores}")


if __name__ == "__main__":
    main()
