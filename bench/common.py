"""Shared helpers of the benchmarks: machine description, alternating paired timings, JSON results.

Timings on a shared machine drift with whatever else runs, so every comparison is a *ratio* measured in one process:
the two (or more) sides run alternately, once each per repetition (their order rotating between repetitions), and the
report gives the median of each side and the median of the per-repetition ratios, with every repetition listed.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from emodistill.trainers.metrics import ser_scores
from emodistill.trainers.reporting import carrier_accuracy, carrier_cells
from emodistill.trainers.results import cpu_arithmetic, isa_caps

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LABELS = ["neutral", "angry", "sad", "happy"]
TEXTS = ["fine thanks", "this is outrageous", "i miss her so much", "what wonderful news"]  # one per label
RATE = 16_000
_LOAD_AT_START = list(os.getloadavg())
# The legend both row-against-row tables (bench/seeds.py, bench/compare_rows.py) open with, after their command.
UA_LEGEND = (
    "UA in %, the mean over folds (test, and validation: the best epoch's UA on each fold's validation speaker); "
    "wins and p (two-sided Wilcoxon signed-rank) over folds."
)


def base_parser(description: str, repetitions: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions: runs in seconds")
    parser.add_argument("--repetitions", type=int, default=repetitions, help="alternating repetitions per comparison")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: bench/results/<name>.json)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice). On a busy shared machine 1 avoids the spin-wait "
        "stalls of oversubscribed threads, which swamp the ratios",
    )
    return parser


def apply_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        **cpu_arithmetic(),
        "isa_caps": isa_caps(),  # also when none is set, so that a record says so
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": _LOAD_AT_START,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(sides: dict[str, Callable[[], object]], repetitions: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each side, `repetitions` times, the sides interleaved and their order rotated."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    times = {name: [] for name in names}
    for rep in range(repetitions):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(time_call(sides[name]))
    return times


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict:
    ratios = [n / d for n, d in zip(numerator, denominator)]
    return {
        "median_ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(numerator) / statistics.median(denominator),
        "per_repetition_ratios": ratios,
    }


def side_summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "per_repetition_s": times}


def write_result(name: str, result: dict, output: Path | None, markdown: Callable[[dict], str] | None = None) -> Path:
    """Writes `<name>.json` (the result, the machine and the command) and, given `markdown`, the table it renders
    from that JSON beside it (`<name>.md`)."""
    path = output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine_info(), **result}
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    path.write_text(json.dumps(result, indent=2) + "\n")
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
    return path


def fold_scores(ids, labels, predictions, carriers: dict[str, str] | None, num_labels: int) -> dict:
    """One fold's test UA (%) and accuracy per emotion carrier, the record `pooled_carrier_accuracy` pools."""
    return {
        "ua": 100 * ser_scores(predictions, labels, num_labels)["ua"],
        "per_carrier": carrier_accuracy(ids, labels, predictions, carriers),
    }


def ua_and_carrier_rows(results: dict[str, dict]) -> list[str]:
    """Markdown rows `| name | UA | words | voice | both |` of results holding `ua` and pooled `per_carrier`."""
    rows = []
    for name, result in results.items():
        accuracy = {carrier: row["accuracy"] for carrier, row in (result["per_carrier"] or {}).items()}
        rows.append(f"| {name} | {result['ua']:.2f} | {carrier_cells(accuracy)} |")
    return rows


def read_seeds_record(path: Path) -> dict:
    """A record of `bench/seeds.py`, read.

    Raises:
        ValueError: the file is another benchmark's record.
    """
    record = json.loads(Path(path).read_text())
    if record.get("benchmark") != "seeds":
        raise ValueError(f"{path} is not a record of bench/seeds.py (benchmark: {record.get('benchmark')!r})")
    return record


def per_fold_run(path: Path, record: dict, key: str) -> dict:
    """The run `key` (`ROW/seed_S`) of a `bench/seeds.py` record, which must keep its per-fold test and validation UA
    (`fold_ua`, `fold_validation_ua`: what a comparison across records pairs by fold).

    Raises:
        ValueError: the run was recorded before the records kept per-fold UA.
    """
    run = record["runs"][key]
    if not {"fold_ua", "fold_validation_ua"} <= run.keys():
        raise ValueError(f"{path}: run {key} keeps no per-fold UA (recorded before the records kept it): gather its "
                         "runs again with bench/seeds.py --gather")  # fmt: skip
    return run
