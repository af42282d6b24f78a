"""Wall time and peak memory of the main job on its embedded default: EmoDistill, then the CE-only baseline.

Each run is `train.py` in a fresh subprocess with a fresh cache (so the corpus generation, eGeMAPS extraction and
teacher training are all inside the measurement) and a fresh output folder. Peak memory is the largest summed
resident set size of the process and its children, sampled every 0.1 s.

    python bench/main_job.py                 # the full default: 10 folds, both runs (about half an hour)
    python bench/main_job.py --quick         # a tiny corpus, 1 fold, 1 epoch: checks the script itself
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

REPO = Path(__file__).resolve().parent.parent
QUICK = ["--synthetic_utterances_per_speaker", "4", "--folds", "1", "--num_train_epochs", "1",
         "--linguistic_teacher_epochs", "1", "--prosodic_teacher_epochs", "1"]  # fmt: skip


def measure(command: list[str], env: dict, log_path: Path) -> dict:
    """Runs `command` (its output to `log_path`), returning its wall time and the peak RSS of its process tree."""
    started = time.perf_counter()
    # To a file, not a pipe: a pipe nobody reads fills up and blocks the child on its next progress bar.
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        root, peak = psutil.Process(process.pid), 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass  # a child ended between listing and reading it
            time.sleep(0.1)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed, see {log_path}:\n{log_path.read_text()[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny corpus, one fold, one epoch")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "main_job.json"))
    parser.add_argument("--runs_dir", help="keep each run's output folder here (default: a temporary folder)")
    args, train_args = parser.parse_known_args()
    train_args = (QUICK if args.quick else []) + train_args

    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        runs_dir.mkdir(parents=True, exist_ok=True)
        for name, extra in (("emodistill", []), ("no_teachers", ["--ablation", "no_teachers"])):
            output_dir = runs_dir / name
            command = [sys.executable, str(REPO / "train.py"), "--output_dir", str(output_dir), *train_args, *extra]
            env = {**os.environ, "EMODISTILL_CACHE": f"{scratch}/cache_{name}"}
            runs[name] = {
                "command": " ".join(["python", "train.py", *train_args, *extra]),
                **measure(command, env, runs_dir / f"{name}.log"),
            }
            results = json.loads((output_dir / "results.json").read_text())
            if not args.quick:  # the tables the README quotes, kept beside the figures
                table = Path(args.output).with_name(f"main_job_{name}_results.md")
                table.write_text((output_dir / "results.md").read_text())
            runs[name].update({"folds": len(results["folds"]), "mean": results["mean"], "std": results["std"]})
            print(
                f"{name}: {runs[name]['wall_s']} s, peak {runs[name]['peak_rss_mib']} MiB, "
                f"WA {results['mean']['wa']:.2f} UA {results['mean']['ua']:.2f}"
            )

    report = {
        "benchmark": "main_job",
        "command": " ".join(["python", "bench/main_job.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "quick": args.quick,
        "runs": runs,
        "wall_ratio_emodistill_over_no_teachers": round(
            runs["emodistill"]["wall_s"] / runs["no_teachers"]["wall_s"], 3
        ),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
