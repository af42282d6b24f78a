"""`emodistill-evaluate`: score a trained student on any labelled corpus in the IEMOCAP layout, with the main job's
metrics, confusion plot and per-utterance predictions.

    emodistill-evaluate --model outputs/emodistill/fold_01/model --data_dir /data/IEMOCAP_full_release \\
        --speakers Ses01_F --output_dir outputs/eval_fold_01

Writes `results.json` (WA, UA, macro-F1, per-class recall, confusion; accuracy per emotion carrier on the synthetic
corpus), `results.md`, `confusion_matrix.png` and `predictions.csv` to `--output_dir`.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor

from emodistill.data_scripts.corpus import prepare_corpus
from emodistill.data_scripts.generated_folder import DEFAULT_CACHE_DIR
from emodistill.data_scripts.iemocap import LABEL_SETS
from emodistill.modeling_emodistill import EmoDistillForAudioClassification

from .collator import EmoDistillDataCollator, evaluation_batch_size
from .metrics import SCALAR_METRICS, ser_scores
from .reporting import carrier_accuracy, plot_confusion
from .results import PREDICTIONS_FILENAME, write_predictions

logger = logging.getLogger("emodistill.evaluate")


@torch.no_grad()
def predict_probabilities(model, extractor, waveforms: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Class probabilities `(N, C)` of every waveform. Batches are sorted by length (less padding); a student
    without attention mask (group norm) is run one utterance at a time, so padding never changes its output."""
    batch_size = evaluation_batch_size(extractor, batch_size)
    collator = EmoDistillDataCollator(extractor)
    order = np.argsort([len(w) for w in waveforms], kind="stable")
    probabilities = np.zeros((len(waveforms), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = collator([{"input_values": waveforms[i]} for i in rows])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        probabilities[rows] = model(**batch).logits.float().softmax(-1).cpu().numpy()
    return probabilities


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emodistill-evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a saved student folder (e.g. outputs/.../fold_01/model)")
    parser.add_argument("--data_dir", required=True, help="a labelled corpus in the IEMOCAP_full_release layout")
    parser.add_argument("--output_dir", required=True, help="where results, plot and predictions go")
    parser.add_argument("--speakers", default=None, help="comma-separated speakers to score (default: all)")
    parser.add_argument("--label_set", default="4class", choices=list(LABEL_SETS))
    parser.add_argument("--skip_bad_audio", action="store_true", help="skip (and count) unreadable wavs")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR, help="Arrow caches of the read corpus")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default=None, help='torch device (default: "cuda" if available, else "cpu")')
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        parser.error(f"--model {args.model!r} is not a saved model folder (no config.json in it).")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: no CUDA GPU is available here; use --device cpu.")
    model = EmoDistillForAudioClassification.from_pretrained(model_dir).to(device).eval()
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    try:
        corpus = prepare_corpus(
            args.data_dir, args.cache_dir, label_set=args.label_set, skip_bad_audio=args.skip_bad_audio, egemaps=False
        )
    except (FileNotFoundError, ValueError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    label_names = corpus.label_names
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels != label_names:
        parser.exit(
            1, f"{parser.prog}: error: the model's classes {model_labels} are not the corpus's {label_names}.\n"
        )
    dataset = corpus.dataset
    if args.speakers:
        speakers = set(args.speakers.split(","))
        unknown = speakers - set(dataset.unique("speaker"))
        if unknown:
            parser.exit(1, f"{parser.prog}: error: no utterance of speaker(s) {sorted(unknown)} in {args.data_dir}.\n")
        dataset = dataset.filter(lambda speaker: speaker in speakers, input_columns="speaker")
    waveforms = [np.asarray(w, dtype=np.float32) for w in dataset["input_values"]]
    probabilities = predict_probabilities(model, extractor, waveforms, args.batch_size)
    labels, ids = np.asarray(dataset["label"]), list(dataset["id"])
    scores = ser_scores(probabilities.argmax(-1), labels, len(label_names), label_names)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "model": str(model_dir),
        "corpus": corpus.name,
        "speakers": sorted(set(dataset["speaker"])),
        "n": len(ids),
        **{m: 100 * scores[m] for m in SCALAR_METRICS},
        "per_class_recall": {k: None if v is None else 100 * v for k, v in scores["per_class_recall"].items()},
        "confusion": scores["confusion"],
        "per_carrier": carrier_accuracy(ids, labels, probabilities.argmax(-1), corpus.carriers),
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_predictions(output_dir / PREDICTIONS_FILENAME, ids, labels, probabilities, label_names)
    title = f"{model_dir.name} on {corpus.name}: {len(ids)} utterances"
    plot_confusion(np.asarray(scores["confusion"]), label_names, output_dir / "confusion_matrix.png", title)
    lines = [
        f"# {model_dir} on {corpus.name}",
        "",
        f"{len(ids)} utterances of {', '.join(results['speakers'])}: WA {results['wa']:.2f} %, "
        f"UA {results['ua']:.2f} %, macro-F1 {results['macro_f1']:.2f} %.",
    ]
    (output_dir / "results.md").write_text("\n".join(lines) + "\n")
    print(lines[-1], f"->  {output_dir}")


if __name__ == "__main__":
    main()
