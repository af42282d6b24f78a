"""What the student cannot hear: an utterance's level. The same test utterances, as recorded and brought to one level.

The student's feature extractor normalises every utterance to zero mean and unit variance (`do_normalize`), so how
loud an utterance is never reaches it; the prosodic teacher reads eGeMAPS loudness, which does carry it (on the
synthetic corpus angry is spoken 8 dB louder than neutral, sad 8 dB quieter, besides each speaker's own level). This
script measures how much of each model's accuracy rests on the level: for every fold of a finished run it scores

- the run's **prosodic teacher** (the cache entry the fold's record names, or that of `--teachers_run_dir`'s fold) on the test speaker's eGeMAPS as
  recorded — which must give the test predictions the cache holds — and on eGeMAPS extracted again after each
  utterance is scaled to one RMS (the corpus's median RMS: level removed, nothing else changed);
- the fold's **student** (`fold_XX/model`) on both versions of the same waveforms, one utterance at a time;
- with `--train_at_one_level`, a prosodic teacher **trained at one level**: the fold's teacher trained again by its
  recipe, seed and speakers on eGeMAPS of every utterance at that level (cached beside it), scored on the test
  speaker at that level. It measures what pitch, rate, voice quality and spectrum — the voice without its level —
  teach. The script first checks that the recorded descriptors would give the cached teacher's own cache key, i.e.
  that only the level differs (run it with the teacher's thread count: its float path is part of the key).

Reported per model and version: test UA (mean over folds) and accuracy per emotion carrier (words / voice / both)
pooled over folds, and how many of the student's predictions the level changed.

    python bench/level_invariance.py --run_dir outputs/emodistill --threads 1   # the run's cache: --cache_dir
    python bench/level_invariance.py --run_dir ... --quick                    # its first two folds
    python bench/level_invariance.py --run_dir ... --train_at_one_level       # + a teacher trained without level
"""

import json
from pathlib import Path

import numpy as np
import torch
from common import apply_threads, base_parser, fold_scores, ua_and_carrier_rows, write_result
from transformers import AutoFeatureExtractor

from emodistill.data_scripts.audio import SAMPLING_RATE
from emodistill.data_scripts.corpus import prepare_corpus
from emodistill.data_scripts.egemaps import extract_egemaps, rms, scale_to_rms
from emodistill.data_scripts.generated_folder import DEFAULT_CACHE_DIR
from emodistill.modeling_emodistill import EmoDistillForAudioClassification
from emodistill.trainers.collator import pad_descriptors
from emodistill.trainers.reporting import pooled_carrier_accuracy
from emodistill.trainers.teacher_training import (
    TeacherArguments,
    float_path,
    teacher_cache_key,
    teacher_inputs,
    train_teacher,
)
from emodistill.trainers.teachers import ProsodicResNetTeacher

VERSIONS = ("as recorded", "one level")
LEVEL_FREE_TEACHER = "teacher trained at one level"
# Which speakers of a cached teacher's record made each split.
SPLIT_SPEAKERS = {"train": "trained_on_speakers", "validation": "early_stopping_speakers", "test": "test_speakers"}


@torch.no_grad()
def teacher_predictions(teacher: ProsodicResNetTeacher, descriptors: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Class ids, in batches of the teacher's recipe in dataset order, as its test predictions were made (the padding
    of a batch reaches the ResNet's valid frames through its convolutions: the batches must be the same)."""
    batches = (descriptors[i : i + batch_size] for i in range(0, len(descriptors), batch_size))
    return np.concatenate([teacher(**pad_descriptors(batch)).logits.argmax(-1).numpy() for batch in batches])


@torch.no_grad()
def student_probabilities(model, extractor, waveforms: list[np.ndarray]) -> np.ndarray:
    """`(utterances, classes)` class probabilities of a saved student, one utterance at a time."""
    rows = []
    for waveform in waveforms:
        inputs = extractor(waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt")
        rows.append(model(inputs.input_values).logits.softmax(-1)[0].numpy())
    return np.stack(rows)


def teacher_splits(meta: dict, dataset) -> dict:
    """The train / validation / test splits a cached teacher's `meta` records, rows in `dataset` order (as
    `speaker_folds` builds them)."""
    speakers = np.asarray(dataset["speaker"])
    return {
        split: dataset.select(np.flatnonzero(np.isin(speakers, meta[key]))) for split, key in SPLIT_SPEAKERS.items()
    }


def train_at_one_level(entry: Path, meta: dict, recorded, levelled, cache_dir: Path, label_names: list[str]):
    """The cached teacher `entry` trained again on `levelled`'s eGeMAPS (columns `id`, `label`, `speaker`,
    `egemaps`, rows as `recorded`'s): same recipe, seed, speakers and float path. Returns its `TeacherResult`.

    Raises:
        RuntimeError: the recorded descriptors do not give `entry`'s cache key (another recipe, corpus or float path,
            e.g. another thread count): the retrained teacher would differ by more than the level.
    """
    settings = TeacherArguments(**meta["settings"])
    splits = teacher_splits(meta, recorded)
    inputs = {split: teacher_inputs("prosodic", rows) for split, rows in splits.items()}
    key = teacher_cache_key("prosodic", settings, meta["seed"], splits, inputs, float_path())
    if key != entry.name:
        raise RuntimeError(
            f"{entry}: its recipe, seed and speakers on the recorded descriptors give cache key {key}, not "
            f"{entry.name}: the teacher was trained on float path {meta['float_path']}, this process is on "
            f"{float_path()} (pass --threads to match), or on other data"
        )
    return train_teacher(
        "prosodic",
        teacher_splits(meta, levelled),
        settings,
        cache_dir,
        len(label_names),
        seed=meta["seed"],
        label_names=label_names,
    )


def fold_report(
    fold_dir: Path, teacher_fold_dir: Path, corpus, cache_dir: Path, level: float, levelled_corpus=None
) -> dict:
    """One fold: the teacher and the student on the test speaker's utterances, as recorded and at one level; with
    `levelled_corpus` (the corpus's `id`, `label`, `speaker` and eGeMAPS at `level`), also a teacher trained on it."""
    record = json.loads((fold_dir / "result.json").read_text())
    teacher_record = json.loads((teacher_fold_dir / "result.json").read_text())
    if teacher_record["test_speakers"] != record["test_speakers"]:
        raise ValueError(f"{teacher_fold_dir} and {fold_dir} test different speakers")
    speakers = np.asarray(corpus.dataset["speaker"])
    test = np.flatnonzero(np.isin(speakers, record["test_speakers"]))
    split = corpus.dataset.select(test)
    ids, labels, num_labels = list(split["id"]), np.asarray(split["label"]), len(corpus.label_names)
    recorded = [np.asarray(w, dtype=np.float32) for w in split["input_values"]]
    levelled = [scale_to_rms(w, level) for w in recorded]

    if "prosodic" not in teacher_record.get("teachers", {}):
        raise ValueError(f"{teacher_fold_dir / 'result.json'} records no prosodic teacher: name a run that used one")
    entry = cache_dir / teacher_record["teachers"]["prosodic"]["cache_entry"]
    if not (entry / "meta.json").exists():
        raise FileNotFoundError(
            f"{entry}, the prosodic teacher {teacher_fold_dir / 'result.json'} names, is not in the cache (an entry "
            "of an older cache version?): retrain the run's teachers into a run of their own and pass it as "
            "--teachers_run_dir"
        )
    meta = json.loads((entry / "meta.json").read_text())
    if "prosodic_teacher_level_dbfs" in meta["settings"]:
        raise ValueError(
            f"{entry}: this prosodic teacher read every utterance at {meta['settings']['prosodic_teacher_level_dbfs']} "
            "dBFS (--prosodic_teacher_level_dbfs): it hears no level to take away; name a run with teachers as recorded"
        )
    teacher = ProsodicResNetTeacher.from_pretrained(entry / "model").eval()
    cached, batch_size = meta["test"]["predictions"], meta["settings"]["prosodic_teacher_batch_size"]
    descriptors = [np.asarray(d) for d in split.with_format("numpy")["egemaps"]]
    as_recorded = teacher_predictions(teacher, descriptors, batch_size)
    if [cached[i] for i in ids] != as_recorded.tolist():
        raise RuntimeError(f"{entry}: the teacher's predictions on the recorded test eGeMAPS differ from its cache's")
    if levelled_corpus is None:
        levelled_descriptors = [extract_egemaps(w, SAMPLING_RATE) for w in levelled]
    else:  # the same descriptors, extracted once for the whole corpus to train a teacher on
        levelled_descriptors = [np.asarray(d) for d in levelled_corpus.select(test).with_format("numpy")["egemaps"]]
    at_one_level = teacher_predictions(teacher, levelled_descriptors, batch_size)
    level_free = {}
    if levelled_corpus is not None:
        recorded_corpus = corpus.dataset.select_columns(list(levelled_corpus.column_names))
        trained = train_at_one_level(entry, meta, recorded_corpus, levelled_corpus, cache_dir, corpus.label_names)
        predictions = np.asarray([trained.meta["test"]["predictions"][i] for i in ids])
        level_free[LEVEL_FREE_TEACHER] = {
            VERSIONS[1]: fold_scores(ids, labels, predictions, corpus.carriers, num_labels),
            "cache_entry": trained.meta["cache_entry"],
        }

    extractor = AutoFeatureExtractor.from_pretrained(fold_dir / "model")
    model = EmoDistillForAudioClassification.from_pretrained(fold_dir / "model").eval()
    student = {v: student_probabilities(model, extractor, w) for v, w in zip(VERSIONS, (recorded, levelled))}
    changed = student[VERSIONS[0]].argmax(-1) != student[VERSIONS[1]].argmax(-1)
    return {
        "fold": record["fold"],
        "test_speakers": record["test_speakers"],
        "teacher": {
            VERSIONS[0]: fold_scores(ids, labels, as_recorded, corpus.carriers, num_labels),
            VERSIONS[1]: fold_scores(ids, labels, at_one_level, corpus.carriers, num_labels),
        },
        **level_free,
        "student": {
            v: fold_scores(ids, labels, p.argmax(-1), corpus.carriers, num_labels) for v, p in student.items()
        },
        "student_predictions_changed": int(changed.sum()),
        "student_max_probability_change": float(np.abs(student[VERSIONS[0]] - student[VERSIONS[1]]).max()),
        "levels_db": [20 * np.log10(rms(w)) for w in recorded],
    }


def summary(folds: list[dict]) -> dict:
    table = {}
    for model in ("teacher", LEVEL_FREE_TEACHER, "student"):
        for version in VERSIONS:
            if version not in folds[0].get(model, {}):
                continue
            rows = [f[model][version] for f in folds]
            table[f"{model}, {version}"] = {
                "ua": float(np.mean([r["ua"] for r in rows])),
                "per_carrier": pooled_carrier_accuracy(rows),
            }
    return table


def markdown(report: dict) -> str:
    lines = [
        f"# The run `{report['run_dir']}` heard as recorded and at one level",
        "",
        f"`{report['machine']['command']}`; test UA (mean over {len(report['folds'])} folds) and accuracy per emotion "
        f"carrier pooled over folds, in %. One level: every utterance scaled to RMS {report['level_db']:.1f} dBFS "
        f"(the corpus's median; as recorded the test utterances span {report['recorded_level_range_db'][0]:.1f} to "
        f"{report['recorded_level_range_db'][1]:.1f} dBFS).",
        "",
        "| Model, audio | UA | words | voice | both |",
        "|---|---|---|---|---|",
    ]
    lines += ua_and_carrier_rows(report["summary"])
    if report.get("train_at_one_level"):  # records written before the option have no such row
        lines += [
            "",
            f"{LEVEL_FREE_TEACHER.capitalize()}: each fold's prosodic teacher trained again by its recipe, seed, "
            "speakers and float path on the eGeMAPS of every utterance at that level (cache entries in the JSON's "
            "folds).",
        ]
    lines += [
        "",
        f"The student's predictions the level changed: {report['student_predictions_changed']} of "
        f"{report['utterances']} (largest change of a class probability {report['student_max_probability_change']:.2g}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=1)
    parser.add_argument("--run_dir", type=Path, required=True, help="a finished train.py run that used the teachers")
    parser.add_argument(
        "--teachers_run_dir",
        type=Path,
        default=None,
        help="the run whose fold records name the prosodic teachers in the cache (default: --run_dir)",
    )
    parser.add_argument("--cache_dir", type=Path, default=Path(DEFAULT_CACHE_DIR), help="the run's cache")
    parser.add_argument("--data_dir", default=None, help="the run's IEMOCAP_full_release (default: synthetic)")
    parser.add_argument("--synthetic_utterances_per_speaker", type=int, default=45, help="the run's synthetic corpus")
    parser.add_argument(
        "--train_at_one_level",
        action="store_true",
        help="also train each fold's prosodic teacher again, by its recipe, on every utterance at one level (into "
        "--cache_dir; --threads as the run's teachers)",
    )
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    corpus = prepare_corpus(
        args.data_dir, args.cache_dir, synthetic_utterances_per_speaker=args.synthetic_utterances_per_speaker
    )
    level = float(np.median([rms(np.asarray(w)) for w in corpus.dataset["input_values"]]))
    levelled_corpus = None
    if args.train_at_one_level:
        descriptors = [
            extract_egemaps(scale_to_rms(np.asarray(w, dtype=np.float32), level), SAMPLING_RATE).tolist()
            for w in corpus.dataset["input_values"]
        ]
        columns = corpus.dataset.select_columns(["id", "label", "speaker"])  # stored as the recorded eGeMAPS are:
        levelled_corpus = columns.add_column("egemaps", descriptors, feature=corpus.dataset.features["egemaps"])
    fold_dirs = sorted(args.run_dir.glob("fold_*"))[: 2 if args.quick else None]
    if not fold_dirs:
        raise SystemExit(f"--run_dir {args.run_dir} holds no fold_XX folder: name a finished train.py run")
    teachers_run_dir = args.teachers_run_dir or args.run_dir
    folds = [
        fold_report(d, teachers_run_dir / d.name, corpus, args.cache_dir, level, levelled_corpus) for d in fold_dirs
    ]
    levels = [db for f in folds for db in f.pop("levels_db")]
    report = {
        "quick": args.quick,
        "train_at_one_level": args.train_at_one_level,
        "run_dir": str(args.run_dir),
        "teachers_run_dir": str(teachers_run_dir),
        "corpus": corpus.name,
        "level_db": 20 * np.log10(level),
        "recorded_level_range_db": [min(levels), max(levels)],
        "utterances": len(levels),
        "summary": summary(folds),
        "student_predictions_changed": sum(f["student_predictions_changed"] for f in folds),
        "student_max_probability_change": max(f["student_max_probability_change"] for f in folds),
        "folds": folds,
    }
    path = write_result("level_invariance", report, args.output, markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
