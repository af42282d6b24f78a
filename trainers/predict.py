"""`emodistill-predict`: emotion scores of audio files and folders with a saved EmoDistill student.

    emodistill-predict --model path/to/student happy.wav call.m4a [--top_k 2] [--json]
    emodistill-predict --model path/to/student recordings/ --output results.csv    # or results.jsonl
    emodistill-predict --model path/to/student long.mp3 --chunk_length_s 8 --stride_length_s 2 --batch_size 8

Inputs are files (anything ffmpeg reads: wav, flac, ogg, mp3, m4a, ...; read by the pipeline's own loader) and
folders (every file below them, recursively, in sorted order, with an audio extension: aac aif aiff flac m4a mp3
oga ogg opus wav wma, in any case). Each file
goes through `pipeline("audio-classification")`, i.e. `EmoDistillAudioClassificationPipeline`: channels averaged,
resampled to 16 kHz, clips shorter than the model's receptive field padded, long recordings scored as the mean of
overlapping windows' probabilities.

Output, written as each file is done: text lines `file: label score, ...` on stdout (default), one JSON document on
stdout (`--json`), or a file (`--output`): `.csv` with columns `file,label,<one score column per class>` (every
class, whatever `--top_k`) or `.jsonl` with one `{"file", "predictions"}` object per line.

A file that cannot be classified does not stop the run: its error (naming it) goes to stderr, the other files are
still written. Exit status: 0 when every file was classified, 1 when any failed, 2 for unusable arguments (a
`--model` that is not a saved student, a `--device` that is not there, an `--output` that cannot be written, window
settings that cannot work), reported before any file is read.
"""

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from transformers import pipeline
from transformers.utils import logging as transformers_logging

from emodistill.modeling_emodistill import EmoDistillAudioClassificationPipeline
from emodistill.modeling_emodistill.pipeline_emodistill import DEFAULT_CHUNK_LENGTH_S, DEFAULT_STRIDE_LENGTH_S

PROG = "emodistill-predict"
# Files with these extensions are taken from folders; a file named on the command line is tried whatever its name.
AUDIO_EXTENSIONS = frozenset(
    {".aac", ".aif", ".aiff", ".flac", ".m4a", ".mp3", ".oga", ".ogg", ".opus", ".wav", ".wma"}
)
OUTPUT_FORMATS = (".csv", ".jsonl")


def audio_files(inputs: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """`(file, None)` for each file to classify, `(input, reason)` for a folder with no audio files in it."""
    for item in inputs:
        folder = Path(item)
        if not folder.is_dir():
            yield item, None  # a missing or unreadable file is reported by the pipeline's loader
            continue
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not found:
            yield item, f"folder {item!r} holds no audio files ({' '.join(sorted(AUDIO_EXTENSIONS))})"
        for path in found:
            yield str(path), None


def predict(classifier: EmoDistillAudioClassificationPipeline, inputs: Iterable[str], **call_kwargs) -> Iterator[dict]:
    """
    One result per file, in order: `{"file", "predictions": [{"label", "score"}, ...]}`, best first, or
    `{"file", "error": reason}` for a file that cannot be classified (unreadable, empty, NaN samples, out of memory).
    """
    for file, problem in audio_files(inputs):
        if problem is not None:
            yield {"file": file, "error": problem}
            continue
        try:
            predictions = classifier(file, **call_kwargs)
        except ValueError as error:  # the pipeline's messages name the file
            yield {"file": file, "error": str(error)}
        except RuntimeError as error:  # from torch, on this input (e.g. out of memory on a long file unchunked)
            yield {"file": file, "error": f"Cannot classify audio file {file!r}: {str(error).splitlines()[0]}"}
        else:
            yield {"file": file, "predictions": predictions}


class TextOutput:
    """`file: label score, label score, ...` per file on stdout, best first, `top_k` labels."""

    def __init__(self, top_k: int | None):
        self.top_k = top_k

    def write(self, file: str, predictions: list[dict]) -> None:
        scores = ", ".join(f"{p['label']} {p['score']:.3f}" for p in predictions[: self.top_k])
        print(f"{file}: {scores}", flush=True)

    def close(self) -> None:
        pass


class JsonOutput:
    """One JSON document on stdout when the run ends: `[{"file", "predictions": [{"label", "score"}, ...]}, ...]`."""

    def __init__(self, top_k: int | None):
        self.top_k = top_k
        self.results = []

    def write(self, file: str, predictions: list[dict]) -> None:
        self.results.append({"file": file, "predictions": predictions[: self.top_k]})

    def close(self) -> None:
        json.dump(self.results, sys.stdout, indent=2)
        sys.stdout.write("\n")


class JsonlOutput:
    """One `{"file", "predictions": [{"label", "score"}, ...]}` object per line, flushed per file."""

    def __init__(self, path: str, top_k: int | None):
        self.file = open(path, "w", encoding="utf-8")
        self.top_k = top_k

    def write(self, file: str, predictions: list[dict]) -> None:
        self.file.write(json.dumps({"file": file, "predictions": predictions[: self.top_k]}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class CsvOutput:
    """`file,label,<score of each class, in id2label order>` per file (every class: a table has fixed columns)."""

    def __init__(self, path: str, labels: list[str]):
        self.file = open(path, "w", encoding="utf-8", newline="")
        self.labels = labels
        self.writer = csv.writer(self.file)
        self.writer.writerow(["file", "label", *labels])
        self.file.flush()

    def write(self, file: str, predictions: list[dict]) -> None:
        scores = {p["label"]: p["score"] for p in predictions}
        self.writer.writerow([file, predictions[0]["label"], *(scores[label] for label in self.labels)])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def device_problem(device: str | None) -> str | None:
    """Why `--device` cannot be used here, or `None`."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except RuntimeError:
        return f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)."
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            reason = (
                "this PyTorch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?)"
            )
            return f"--device {device}: {reason}. Leave --device out (or --device cpu) to run on the CPU."
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            return f"--device {device}: only {count} CUDA GPU(s) visible, cuda:0 to cuda:{count - 1}."
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        return f"--device {device}: MPS (Apple GPU) is not available here. Leave --device out to run on the CPU."
    return None


def load_classifier(model: str, device: str | None) -> EmoDistillAudioClassificationPipeline:
    """The pipeline of the student in folder (or hub id) `model`; `ValueError` with a one-line reason otherwise."""
    folder = Path(model).expanduser()
    expected = (
        "a folder with a config.json (a saved student: config.json, model.safetensors, preprocessor_config.json)"
    )
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ValueError(f"--model {model} is not {expected}.")
    elif folder.exists():
        raise ValueError(f"--model {model} is a file, not {expected}.")
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:  # a hub id is "name" or "owner/name"
        raise ValueError(f"--model {model} does not exist; expected {expected}.")
    try:
        classifier = pipeline("audio-classification", model=str(folder), device=device)
    except Exception as error:  # from json, safetensors, torch, the hub...: all mean "not a usable student"
        reason = (str(error).strip().splitlines() or [""])[0]
        where = "" if folder.is_dir() else " (not a folder here, nor a model id on the Hugging Face Hub)"
        raise ValueError(f"Cannot load --model {model}{where}: {type(error).__name__}: {reason}") from error
    if not isinstance(classifier, EmoDistillAudioClassificationPipeline):
        model_type = getattr(classifier.model.config, "model_type", "unknown")
        raise ValueError(f"--model {model} holds a {model_type!r} model, not an EmoDistill student.")
    return classifier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", metavar="file_or_folder", help="audio files and folders of them")
    parser.add_argument("--model", required=True, help="folder (or hub id) of a saved EmoDistill student")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--output", default=None, help="write results to this .csv or .jsonl file as they come")
    parser.add_argument("--top_k", type=int, default=None, help="labels per file (default: all)")
    parser.add_argument(
        "--chunk_length_s", type=float, default=DEFAULT_CHUNK_LENGTH_S, help="window length; 0 disables windows"
    )
    parser.add_argument(
        "--stride_length_s", type=float, default=DEFAULT_STRIDE_LENGTH_S, help="overlap of consecutive windows"
    )
    parser.add_argument("--batch_size", type=int, default=1, help="windows of one file per forward pass")
    parser.add_argument(
        "--device",
        default=None,
        help='torch device, e.g. "cpu" or "cuda:0" (default: the first GPU if one is visible, else the CPU)',
    )
    return parser


def open_output(args, labels: list[str]) -> TextOutput | JsonOutput | JsonlOutput | CsvOutput:
    if args.output is None:
        return JsonOutput(args.top_k) if args.json else TextOutput(args.top_k)
    if args.output.endswith(".csv"):
        return CsvOutput(args.output, labels)
    return JsonlOutput(args.output, args.top_k)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    transformers_logging.disable_progress_bar()  # stderr is for the errors of this run
    if args.top_k is not None and args.top_k < 1:
        parser.error(f"--top_k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.output is not None and not args.output.endswith(OUTPUT_FORMATS):
        parser.error(f"--output must end in .csv or .jsonl (the format), got {args.output!r}")
    if args.output is not None and args.json:
        parser.error("--json prints to stdout and --output writes a file: use one of them")
    if problem := device_problem(args.device):
        parser.exit(2, f"{PROG}: error: {problem}\n")
    try:
        classifier = load_classifier(args.model, args.device)
        classifier.window_and_hop(args.chunk_length_s, args.stride_length_s)
    except ValueError as error:
        parser.exit(2, f"{PROG}: error: {error}\n")
    labels = [classifier.model.config.id2label[i] for i in range(classifier.model.config.num_labels)]
    try:
        output = open_output(args, labels)
    except OSError as error:
        parser.exit(2, f"{PROG}: error: cannot write --output {args.output}: {error.strerror}\n")

    call_kwargs = dict(chunk_length_s=args.chunk_length_s, stride_length_s=args.stride_length_s)
    # Every class is scored (the CSV has a column per class); the other formats show `--top_k` of them.
    results = predict(classifier, args.inputs, top_k=None, batch_size=args.batch_size, **call_kwargs)
    written = failed = 0
    try:
        for result in results:
            if "error" in result:
                failed += 1
                print(f"{PROG}: error: {result['error']}", file=sys.stderr, flush=True)
                continue
            output.write(result["file"], result["predictions"])
            written += 1
    finally:
        output.close()
    total = written + failed
    if args.output is not None:
        summary = f"{written} of {total} inputs written to {args.output}" + (f"; {failed} failed" if failed else "")
    else:
        summary = f"{failed} of {total} inputs failed" if failed else ""
    if failed:
        parser.exit(1, f"{PROG}: {summary} (errors above).\n")
    if summary:
        print(f"{PROG}: {summary}.", file=sys.stderr)


if __name__ == "__main__":
    main()
