"""Wall time, peak memory and results of the main job on its embedded default, and whether a rerun reproduces them.

Three runs of `train.py`, each a fresh subprocess with a fresh output folder:

1. `cold`: EmoDistill from an empty cache: corpus generation, eGeMAPS extraction, teacher training and the 10 folds
   are all inside the measurement (the pretrained student ships with the package; its own recipe is timed by
   `emodistill-pretrain-student`, see its `pretraining.json`);
2. `warm`: the same command again with the cache of run 1 (corpus, descriptors and teacher outputs reused): its
   `results.json` must equal run 1's but for wall times and dates (`reproduced`);
3. `no_teachers`: the CE-only baseline (`--ablation no_teachers`, same student), with the warm cache.

It then compares EmoDistill and CE-only fold by fold (wins, two-sided Wilcoxon signed-rank p) and per emotion carrier.
Peak memory is the largest summed resident set size of the process and its children, sampled every 0.1 s. CPU time
is user + system of the process and its children; the steal fraction is the share of the machine's CPU time its
hypervisor gave to other guests meanwhile. Neither measures the machine's speed: on the shared 2-core machine of
2026-12-03 a student epoch took twice as long from one minute to the next with no steal, and the CPU time doubled
with it (docs/experiments.md, "The benchmark at the present default, complete"): a wall time is the machine's as it
was then.

    python bench/main_job.py                 # the full default (about an hour on 2 CPU cores: three runs)
    python bench/main_job.py --quick         # a tiny corpus, 2 folds, 1 epoch: checks the script itself
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import machine_info

from emodistill.trainers.arguments import CE_ONLY
from emodistill.trainers.reporting import fold_ua, paired_comparison

REPO = Path(__file__).resolve().parent.parent
QUICK = ["--synthetic_utterances_per_speaker", "4", "--folds", "1,2", "--num_train_epochs", "1",
         "--linguistic_teacher_epochs", "1", "--prosodic_teacher_epochs", "1"]  # fmt: skip
# What legitimately differs between two runs of the same command.
VOLATILE = {"wall_seconds", "provenance", "date"}


def machine_ticks() -> list[int] | None:
    """The machine's CPU time so far, in ticks per state (Linux `/proc/stat`: user, nice, system, idle, iowait, irq,
    softirq, steal), or None elsewhere."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of the machine's CPU time that its hypervisor gave to other guests between two `machine_ticks()`:
    on a shared virtual machine the same job's wall time varies with it."""
    if before is None or after is None:
        return None
    spent = [b - a for a, b in zip(before, after)]
    return round(spent[7] / sum(spent), 3) if sum(spent) else None


def measure(command: list[str], env: dict, log_path: Path) -> dict:
    """Runs `command` (its output to `log_path`), returning its wall time, the CPU time of its process tree (user +
    system), the peak RSS of that tree and the machine's steal fraction meanwhile."""
    ticks, children = machine_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # To a file, not a pipe: a pipe nobody reads fills up and blocks the child on its next line.
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
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = used.ru_utime + used.ru_stime - children.ru_utime - children.ru_stime
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "steal_fraction": steal_fraction(ticks, machine_ticks()),
    }


def comparable(value):
    """`results.json` without what differs between two runs of one command (wall times, dates)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny corpus, two folds, one epoch")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "main_job.json"))
    parser.add_argument("--runs_dir", help="keep each run's output folder here (default: a temporary folder)")
    args, train_args = parser.parse_known_args()
    train_args = (QUICK if args.quick else []) + train_args

    runs, results = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        if runs_dir.exists() and any(runs_dir.iterdir()):
            # Finished folds there would be kept by train.py: the "cold" run would measure nothing.
            raise SystemExit(f"--runs_dir {runs_dir} is not empty: give a new or empty folder.")
        runs_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "EMODISTILL_CACHE": f"{scratch}/cache"}
        for name, extra in (("cold", []), ("warm", []), (CE_ONLY, ["--ablation", CE_ONLY])):
            output_dir = runs_dir / name
            command = [sys.executable, str(REPO / "train.py"), "--output_dir", str(output_dir), *train_args, *extra]
            runs[name] = {
                "command": " ".join(["python", "train.py", *train_args, *extra]),
                **measure(command, env, runs_dir / f"{name}.log"),
            }
            results[name] = json.loads((output_dir / "results.json").read_text())
            runs[name].update({"folds": len(results[name]["folds"]), "mean": results[name]["mean"],
                               "std": results[name]["std"], "per_carrier": results[name]["per_carrier"]})  # fmt: skip
            if not args.quick:  # the tables the README quotes, kept beside the figures
                # Named after the record (main_job.json: main_job_cold_results.md, ...): another record keeps its own.
                table = Path(args.output).with_name(f"{Path(args.output).stem}_{name}_results.md")
                table.write_text((output_dir / "results.md").read_text())
            print(
                f"{name}: {runs[name]['wall_s']} s ({runs[name]['cpu_s']} s of CPU, steal "
                f"{runs[name]['steal_fraction']}), peak {runs[name]['peak_rss_mib']} MiB, "
                f"WA {results[name]['mean']['wa']:.2f} UA {results[name]['mean']['ua']:.2f}"
            )

    first, second = (comparable({k: v for k, v in results[n].items()}) for n in ("cold", "warm"))
    for run in (first, second):
        run["config"].pop("command")
        for fold in run["folds"]:
            fold["config"].pop("command")
    report = {
        "benchmark": "main_job",
        "command": " ".join(["python", "bench/main_job.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),  # the training runs inherit its environment, instruction-set caps included
        "quick": args.quick,
        "runs": runs,
        "reproduced": first == second,
        "emodistill_vs_ce_only": paired_comparison(fold_ua([results["cold"]]), fold_ua([results[CE_ONLY]])),
        "teachers_alone": results["cold"]["teachers"],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(f"reproduced: {report['reproduced']}; EmoDistill vs CE-only: {report['emodistill_vs_ce_only']}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
