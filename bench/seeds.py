"""EmoDistill against CE-only over several seeds: is the gain measured by `bench/main_job.py` more than one seed's luck?

For each seed S, two runs of `train.py`: `--seed S` (EmoDistill) and `--seed S --ablation no_teachers` (CE-only, same
pretrained student), in `<runs_dir>/seed_S/none` and `<runs_dir>/seed_S/no_teachers`: the layout of
`train.py --ablation_table --output_dir <runs_dir>`, which keeps these rows (their fingerprints match) and trains only
the others. A seed changes the teachers (trained per seed), the student's heads and the batch order; folds and
corpus stay. Finished folds in `--runs_dir` are kept by train.py, not retrained, so an interrupted benchmark resumes.

Reported: per seed, mean UA of both and the fold-by-fold comparison; over seeds, mean ± std (population std over
seeds) of the mean UA, and the comparison on fold UA averaged over seeds (wins, two-sided Wilcoxon signed-rank p);
accuracy per emotion carrier averaged over seeds; each run's thread count as its results.json records it.

    python bench/seeds.py --seeds 0 1 2 --runs_dir outputs/ablation3   # about 30 min per seed on 2 CPU cores
    python bench/seeds.py --quick                                      # a tiny corpus, 2 folds: checks the script
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch
from main_job import QUICK, measure

from emodistill.trainers.reporting import fold_ua, mean_carrier_accuracy, mean_std, paired_comparison
from emodistill.trainers.results import claim_output_dir

REPO = Path(__file__).resolve().parent.parent
ROWS = {"emodistill": [], "ce_only": ["--ablation", "no_teachers"]}
FOLDERS = {"emodistill": "none", "ce_only": "no_teachers"}  # the --ablation_table layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny corpus, two folds, one epoch, seeds 0,1")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 1 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: inherited)")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "seeds.json"))
    parser.add_argument("--runs_dir", help="the runs' folder, reused across invocations (default: a temporary one)")
    args, train_args = parser.parse_known_args()
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds {' '.join(map(str, seeds))} names a seed more than once.")
    train_args = (QUICK if args.quick else []) + train_args
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)

    runs, results = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        claim_output_dir(runs_dir, overwrite=False, is_main_process=True)  # train.py's own folder: never another's
        for seed in seeds:
            for row, extra in ROWS.items():
                output_dir = runs_dir / f"seed_{seed}" / FOLDERS[row]
                arguments = [*train_args, "--seed", str(seed), *extra]
                command = [sys.executable, str(REPO / "train.py"), "--output_dir", str(output_dir), *arguments]
                log = runs_dir / f"seed_{seed}_{FOLDERS[row]}.log"
                timing = measure(command, env, log)
                result = json.loads((output_dir / "results.json").read_text())
                results[(seed, row)] = result
                runs[f"{row}/seed_{seed}"] = {
                    "command": " ".join(["python", "train.py", *arguments]),
                    # Folds finished by an earlier invocation are read, not retrained: then this is not training time.
                    "wall_s_of_this_invocation": timing["wall_s"],
                    # The folds' own counts: a resumed run's provenance has only the summarising invocation's.
                    "torch_threads": sorted({f.get("torch_threads") for f in result["folds"]}, key=str),
                    "folds": len(result["folds"]),
                    "mean": result["mean"],
                    "per_carrier": result["per_carrier"],
                }
                print(f"seed {seed} {row}: UA {result['mean']['ua']:.2f} ({timing['wall_s']} s)")

    per_seed = []
    for seed in seeds:
        ours, theirs = (fold_ua([results[(seed, row)]]) for row in ROWS)
        per_seed.append({
            "seed": seed,
            **{f"{row}_ua": results[(seed, row)]["mean"]["ua"] for row in ROWS},
            "comparison": paired_comparison(ours, theirs),
        })  # fmt: skip
    # None per row on a corpus without carriers (the real IEMOCAP).
    carriers = {row: mean_carrier_accuracy([results[(s, row)] for s in seeds]) for row in ROWS}
    report = {
        "benchmark": "seeds",
        "command": " ".join(["python", "bench/seeds.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "quick": args.quick,
        "seeds": seeds,
        "runs": runs,
        "per_seed": per_seed,
        "over_seeds": {
            **{f"{row}_ua": mean_std([results[(s, row)]["mean"]["ua"] for s in seeds]) for row in ROWS},
            "ua_difference": mean_std([p["emodistill_ua"] - p["ce_only_ua"] for p in per_seed]),
            "comparison_on_fold_ua_averaged_over_seeds": paired_comparison(
                *(fold_ua([results[(s, row)] for s in seeds]) for row in ROWS)
            ),
        },
        "per_carrier_accuracy_averaged_over_seeds": carriers,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.output).with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.output}")


def markdown(report: dict) -> str:
    """The report as the README quotes it."""
    over = report["over_seeds"]
    lines = [
        f"# EmoDistill vs CE-only over seeds {', '.join(map(str, report['seeds']))}",
        "",
        f"`{report['command']}`; UA in %, the mean over folds; wins and p (two-sided Wilcoxon signed-rank) over folds.",
        "",
        "| Seed | EmoDistill UA | CE-only UA | difference | wins | p | threads (EmoDistill, CE-only) |",
        "|---|---|---|---|---|---|---|",
    ]
    for point in report["per_seed"]:
        comparison, seed = point["comparison"], point["seed"]
        p = "–" if comparison["wilcoxon_p"] is None else f"{comparison['wilcoxon_p']:.4f}"
        threads = ", ".join("/".join(map(str, report["runs"][f"{row}/seed_{seed}"]["torch_threads"])) for row in ROWS)
        lines.append(
            f"| {seed} | {point['emodistill_ua']:.2f} | {point['ce_only_ua']:.2f} | "
            f"{comparison['mean_difference']:+.2f} | {comparison['wins']}/{comparison['folds']} | {p} | {threads} |"
        )
    comparison = over["comparison_on_fold_ua_averaged_over_seeds"]
    p = "–" if comparison["wilcoxon_p"] is None else f"{comparison['wilcoxon_p']:.4f}"
    lines.append(
        f"| mean ± std over seeds | {over['emodistill_ua']['mean']:.2f} ± {over['emodistill_ua']['std']:.2f} | "
        f"{over['ce_only_ua']['mean']:.2f} ± {over['ce_only_ua']['std']:.2f} | "
        f"{over['ua_difference']['mean']:+.2f} ± {over['ua_difference']['std']:.2f} | "
        f"{comparison['wins']}/{comparison['folds']} (fold UA averaged over seeds) | {p} | |"
    )
    carriers = report["per_carrier_accuracy_averaged_over_seeds"]
    if carriers["emodistill"]:
        names = list(carriers["emodistill"])
        lines += ["", "Accuracy per emotion carrier, averaged over seeds (%):", "", f"| Row | {' | '.join(names)} |"]
        lines.append("|---|" + "---|" * len(names))
        for row, values in carriers.items():
            lines.append(f"| {row} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in values.values()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
