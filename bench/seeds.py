"""Rows against CE-only over several seeds: is a gain measured by `bench/main_job.py` more than one seed's luck, and
which loss weight or temperature does validation prefer?

A row of `--rows` (default: `none`, the full method) is an ablation, `train.py --seed S --ablation R`, or the full
method with one loss weight or temperature set, e.g. `alpha=0.25`: `train.py --seed S --alpha 0.25`. For each seed S
each row runs, and `train.py --seed S --ablation no_teachers` (CE-only, same pretrained student), in
`<runs_dir>/seed_S/<row>` (`alpha_0.25` for `alpha=0.25`): for ablations the layout of `train.py --ablation_table
--output_dir <runs_dir>`, which keeps these rows (their fingerprints match) and trains only the others. A seed changes
the teachers (trained per seed), the student's heads and the batch order; folds and corpus stay. Finished folds in
`--runs_dir` are kept by train.py, not retrained, so an interrupted benchmark resumes. `--gather` trains nothing: it
summarises the runs already in `--runs_dir` (`train.py --gather`), which may come from other invocations or other code
versions; each run's code digests are recorded. `--from_records` reads no run either: it takes each run from earlier
records of this script (runs trained on other days, since deleted), a run held by several having to agree fold by fold,
and reports them as one table.

Reported per row: per seed, mean test UA and mean validation UA (what a choice between rows may look at) and the
fold-by-fold comparison with CE-only; over seeds, mean ± std (population std over seeds) and the comparison on fold
UA averaged over seeds (wins, two-sided Wilcoxon signed-rank p); when `none` is a row, the same comparison of the full
method against each other row (what each part adds); accuracy per emotion carrier averaged over seeds; each run's
thread count and CPU kernels as its folds record them.

    python bench/seeds.py --seeds 0 1 2 --runs_dir outputs/seeds            # about 25 min per run on 2 CPU cores
    python bench/seeds.py --seeds 0 1 2 --rows none no_logit_kd             # two rows against CE-only
    python bench/seeds.py --rows alpha=1 alpha=0.5 none no_logit_kd         # the logit-KD weight: 1, 0.5, 0.25, 0
    python bench/seeds.py --rows --use_weighted_layer_sum true              # CE-only alone, heads on all layers
    python bench/seeds.py --quick                                           # a tiny corpus, 2 folds: checks the script
    python bench/seeds.py --rows none no_logit_kd --from_records bench/results/seeds.json bench/results/other.json

`bench/compare_rows.py` compares rows of such records with each other (e.g. a row against another CE-only).
"""

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import UA_LEGEND, machine_info, per_fold_run, read_seeds_record
from main_job import QUICK, measure

from emodistill.trainers.arguments import ABLATIONS, CE_ONLY, FULL_METHOD
from emodistill.trainers.reporting import (
    carrier_cells,
    fold_ua,
    format_p,
    mean_carrier_accuracy,
    mean_std,
    mean_validation_ua,
    paired_comparison,
    percent,
    pm,
    teachers_over_seeds,
)
from emodistill.trainers.results import claim_output_dir

REPO = Path(__file__).resolve().parent.parent
# What a row may set besides an ablation, with the values it may take: the loss weights of Eq. (5) (and the prosodic
# teacher's own logit weight) and the teachers' temperatures, >= 0; the level the prosodic teacher's audio is brought
# to, in dBFS, <= 0.
SETTINGS = {
    **{
        name: (0.0, math.inf)
        for name in ("alpha", "alpha_prosodic", "beta", "gamma", "tau_linguistic", "tau_prosodic")
    },
    "prosodic_teacher_level_dbfs": (-math.inf, 0.0),
}


@dataclass(frozen=True)
class Row:
    """One `--rows` entry: its folder under `seed_S/`, its train.py arguments and its name in the tables."""

    folder: str
    arguments: tuple[str, ...]
    name: str


def parse_row(text: str) -> Row:
    """`none`, an ablation name, or SETTING=VALUE (the full method with that setting), as a `Row`."""
    if text in ABLATIONS and text != CE_ONLY:
        return Row(text, ("--ablation", text) if text != FULL_METHOD else (), ABLATIONS[text].paper_row)
    setting, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    low, high = SETTINGS.get(setting, (0.0, 0.0))
    if setting not in SETTINGS or number is None or not (math.isfinite(number) and low <= number <= high):
        raise argparse.ArgumentTypeError(
            f"a row is an ablation ({', '.join(a for a in ABLATIONS if a != CE_ONLY)}; CE-only always runs) or "
            f"SETTING=VALUE with SETTING one of {', '.join(SETTINGS)} and a finite VALUE >= 0 (<= 0 for "
            f"prosodic_teacher_level_dbfs); got {text!r}"
        )
    name = f"{ABLATIONS[FULL_METHOD].paper_row}, {setting} = {number:g}"
    return Row(f"{setting}_{number:g}", (f"--{setting}", f"{number:g}"), name)


CE_ONLY_ROW = Row(CE_ONLY, ("--ablation", CE_ONLY), ABLATIONS[CE_ONLY].paper_row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny corpus, two folds, one epoch, seeds 0,1")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (0 1 with --quick)")
    parser.add_argument(
        "--rows",
        nargs="*",
        type=parse_row,
        default=[parse_row(FULL_METHOD)],
        help="rows compared with CE-only: ablations (default: none, the full method) or SETTING=VALUE, e.g. alpha=0.5; "
        "`--rows` alone: CE-only only (e.g. a variant of it, its flags after the others)",
    )
    parser.add_argument(
        "--gather",
        action="store_true",
        help="train nothing: summarise the finished runs in --runs_dir (each with train.py --gather)",
    )
    parser.add_argument(
        "--from_records",
        nargs="+",
        type=Path,
        default=None,
        help="train nothing, read no run: take each run from these bench/seeds.py records (e.g. rows measured on "
        "other days, whose runs are gone); a run held by several must agree in every fold",
    )
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the runs (default: inherited)")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "seeds.json"))
    parser.add_argument("--runs_dir", help="the runs' folder, reused across invocations (default: a temporary one)")
    args, train_args = parser.parse_known_args()
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    for name, values in (("--seeds", seeds), ("--rows", [row.folder for row in args.rows])):
        if len(set(values)) != len(values):
            parser.error(f"{name} {' '.join(map(str, values))} names a value more than once.")
    if args.gather and not args.runs_dir:
        parser.error("--gather summarises the runs of --runs_dir: name it.")
    if args.from_records and (args.gather or args.runs_dir or train_args):
        parser.error("--from_records reads records, not runs: it takes no --gather, --runs_dir or train.py flags.")
    train_args = (QUICK if args.quick else []) + train_args
    compared = [row.folder for row in args.rows]
    rows = [*compared, CE_ONLY]
    if args.from_records:
        try:
            runs, results, teachers = runs_from_records(args.from_records, seeds, [*args.rows, CE_ONLY_ROW])
        except (ValueError, FileNotFoundError) as error:
            parser.error(str(error))
    else:
        runs, results = train_or_gather(args, seeds, train_args)
        # The paper's "w/o f_S" rows: the full method's teachers alone (the same teachers as every row's of a seed).
        teachers = teachers_over_seeds([results[(s, FULL_METHOD)] for s in seeds]) if FULL_METHOD in compared else {}

    per_seed = [
        {
            "seed": seed,
            "ua": {row: results[(seed, row)]["mean"]["ua"] for row in rows},
            "validation_ua": {row: runs[f"{row}/seed_{seed}"]["validation_ua"] for row in rows},
            "vs_ce_only": {
                row: paired_comparison(fold_ua([results[(seed, row)]]), fold_ua([results[(seed, CE_ONLY)]]))
                for row in compared
            },
        }
        for seed in seeds
    ]
    report = {
        "benchmark": "seeds",
        "command": " ".join(["python", "bench/seeds.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # This process's; each run's thread count is in `runs`, as its folds recorded it.
        "machine": machine_info(),
        "quick": args.quick,
        "seeds": seeds,
        "gathered": args.gather,
        # Runs taken from these records (each run names the records that hold it), neither trained nor gathered.
        "from_records": [str(path) for path in args.from_records or []],
        "rows": {row.folder: row.name for row in [*args.rows, CE_ONLY_ROW]},
        "runs": runs,
        "per_seed": per_seed,
        "over_seeds": {
            "ua": {row: mean_std([p["ua"][row] for p in per_seed]) for row in rows},
            "validation_ua": {row: mean_std([p["validation_ua"][row] for p in per_seed]) for row in rows},
            "ua_difference_vs_ce_only": {
                row: mean_std([p["ua"][row] - p["ua"][CE_ONLY] for p in per_seed]) for row in compared
            },
            "vs_ce_only_on_fold_ua_averaged_over_seeds": {
                row: paired_comparison(*(fold_ua([results[(s, r)] for s in seeds]) for r in (row, CE_ONLY)))
                for row in compared
            },
            # What each part of the method adds (the paper's reading of its ablation table): the full method
            # against each other row, when `none` is a row.
            "ours_vs_row_on_fold_ua_averaged_over_seeds": {
                row: paired_comparison(*(fold_ua([results[(s, r)] for s in seeds]) for r in (FULL_METHOD, row)))
                for row in compared
                if FULL_METHOD in compared and row != FULL_METHOD
            },
        },
        "teachers_alone": teachers,
        # None per row on a corpus without carriers (the real IEMOCAP).
        "per_carrier_accuracy_averaged_over_seeds": {
            row: mean_carrier_accuracy([results[(s, row)] for s in seeds]) for row in rows
        },
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.output).with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.output}")


def train_or_gather(args: argparse.Namespace, seeds: list[int], train_args: list[str]) -> tuple[dict, dict]:
    """Each row's run and CE-only's at each seed, trained (or, with `--gather`, summarised) in `--runs_dir`: the
    record's `runs` (`ROW/seed_S` -> command, threads, kernels, code digests, per-fold UA, ...) and each run's
    `results.json` by (seed, row folder)."""
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    runs, results = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        claim_output_dir(runs_dir, overwrite=False, is_main_process=True)  # train.py's own folder: never another's
        for seed in seeds:
            for row in [*args.rows, CE_ONLY_ROW]:
                output_dir = runs_dir / f"seed_{seed}" / row.folder
                arguments = [*train_args, "--seed", str(seed), *row.arguments]
                job = ["--gather"] if args.gather else arguments
                command = [sys.executable, str(REPO / "train.py"), "--output_dir", str(output_dir), *job]
                # Its own log under --gather: the training log stays.
                log = runs_dir / f"seed_{seed}_{row.folder}{'.gather' if args.gather else ''}.log"
                timing = measure(command, env, log)
                result = json.loads((output_dir / "results.json").read_text())
                results[(seed, row.folder)] = result
                runs[f"{row.folder}/seed_{seed}"] = {
                    # Gathered: the command the run recorded (it may have been trained by hand, with other flags).
                    "command": result["config"]["command"]
                    if args.gather
                    else " ".join(["python", "train.py", *arguments]),
                    # Folds finished by an earlier invocation are read, not retrained: then this is not training time.
                    "wall_s_of_this_invocation": timing["wall_s"],
                    # The folds' own counts: a resumed run's provenance has only the summarising invocation's.
                    "torch_threads": sorted({f.get("torch_threads") for f in result["folds"]}, key=str),
                    # The CPU kernels each fold trained with (None: recorded before folds kept it).
                    "cpu_capabilities": sorted({f.get("cpu_capability") for f in result["folds"]}, key=str),
                    # The CPUs they trained on (None: recorded before folds kept it).
                    "cpus": sorted({f.get("cpu") for f in result["folds"]}, key=str),
                    # The code each fold trained with (`--gather` may combine runs of several code versions).
                    "source_digests": sorted(
                        {f["fingerprint"]["components"]["code"]["source"] for f in result["folds"]}
                    ),
                    "folds": len(result["folds"]),
                    # Per fold, so that a later comparison (another row, a paired test) needs only this record.
                    "fold_ua": {f["fold"]: f["ua"] for f in result["folds"]},
                    "fold_validation_ua": {f["fold"]: f["validation_ua"] for f in result["folds"]},
                    "mean": result["mean"],
                    "validation_ua": mean_validation_ua(result),
                    "per_carrier": result["per_carrier"],
                }
                print(f"seed {seed} {row.folder}: UA {result['mean']['ua']:.2f} ({timing['wall_s']} s)")
    return runs, results


def runs_from_records(paths: list[Path], seeds: list[int], rows: list[Row]) -> tuple[dict, dict, dict]:
    """Each row's run at each seed taken from earlier `bench/seeds.py` records, as `train_or_gather` returns them
    (`results` holds what the tables read: per-fold test and validation UA, the mean, accuracy per carrier), and the
    teachers alone: those of the record that holds the full method's runs at exactly `seeds`, when one does (the
    records keep no per-run teacher scores; a seed's teachers are every row's).

    A run held by several records (CE-only beside each set of rows, say) must agree in every fold's test and
    validation UA and in accuracy per carrier: it is one run gathered twice, or a rerun that reproduced it. Runs held
    by one record only are taken as they are: that the records measured the same defaults, corpus and CPU is the
    caller's to know (each run keeps its command, code digests, threads and CPU to check it by).

    Raises:
        ValueError: a record of another benchmark, a run no record holds, one without per-fold UA, or one whose
            records disagree.
    """
    records = {path: read_seeds_record(path) for path in paths}
    runs, results = {}, {}
    for seed in seeds:
        for row in rows:
            key = f"{row.folder}/seed_{seed}"
            holders = [path for path, record in records.items() if key in record["runs"]]
            if not holders:
                raise ValueError(f"no record holds the run {key}: {', '.join(map(str, paths))}")
            run = per_fold_run(holders[0], records[holders[0]], key)
            for path in holders[1:]:
                other = per_fold_run(path, records[path], key)
                for field in ("fold_ua", "fold_validation_ua", "per_carrier"):
                    if other.get(field) != run.get(field):
                        raise ValueError(f"the run {key} differs between {holders[0]} and {path} in {field}: pass "
                                         "only the record of the run to report")  # fmt: skip
            runs[key] = {**run, "records": [str(path) for path in holders]}
            folds = [
                {"fold": int(fold), "ua": ua, "validation_ua": run["fold_validation_ua"][fold]}
                for fold, ua in run["fold_ua"].items()  # JSON keys are strings
            ]
            results[(seed, row.folder)] = {"folds": folds, "mean": run["mean"], "per_carrier": run.get("per_carrier")}
    if FULL_METHOD not in [row.folder for row in rows]:
        return runs, results, {}
    teachers = next(
        (
            record["teachers_alone"]
            for record in records.values()
            if FULL_METHOD in record["rows"] and sorted(record["seeds"]) == sorted(seeds)
        ),
        {},
    )
    return runs, results, teachers


def markdown(report: dict) -> str:
    """The report as the README quotes it."""
    over, names = report["over_seeds"], report["rows"]
    lines = [
        f"# {'Against CE-only' if len(names) > 1 else 'CE-only'} over seeds {', '.join(map(str, report['seeds']))}",
        "",
        f"`{report['command']}`; {UA_LEGEND}"
        + (
            " Runs gathered, not trained: each run's training command and code digests are in the JSON."
            if report.get("gathered")
            else f" Runs taken from the records {', '.join(f'`{r}`' for r in report['from_records'])}, neither "
            "trained nor gathered: each run's records, training command and code digests are in the JSON."
            if report.get("from_records")
            else ""
        ),
        "",
        "| Row | Seed | test UA | − CE-only | wins | p | validation UA | threads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, name in names.items():
        for point in report["per_seed"]:
            seed, threads = point["seed"], report["runs"][f"{row}/seed_{point['seed']}"]["torch_threads"]
            compared = "| | | "
            if row in point["vs_ce_only"]:
                c = point["vs_ce_only"][row]
                compared = f"{c['mean_difference']:+.2f} | {c['wins']}/{c['folds']} | {format_p(c)} | "
            lines.append(
                f"| {name} | {seed} | {point['ua'][row]:.2f} | {compared}{point['validation_ua'][row]:.2f} | "
                f"{'/'.join(map(str, threads))} |"
            )
        if len(report["per_seed"]) == 1:  # the seed's own line says it all: a std over one seed says nothing
            continue
        compared = "(baseline) | | | "
        if row in over["vs_ce_only_on_fold_ua_averaged_over_seeds"]:
            c, d = over["vs_ce_only_on_fold_ua_averaged_over_seeds"][row], over["ua_difference_vs_ce_only"][row]
            compared = (
                f"{d['mean']:+.2f} ± {d['std']:.2f} | {c['wins']}/{c['folds']} (fold UA averaged) | {format_p(c)} | "
            )
        ua, validation = over["ua"][row], over["validation_ua"][row]
        lines.append(
            f"| **{name}** | mean ± std | **{ua['mean']:.2f} ± {ua['std']:.2f}** | {compared}"
            f"{validation['mean']:.2f} ± {validation['std']:.2f} | |"
        )
    if against_ours := over["ours_vs_row_on_fold_ua_averaged_over_seeds"]:
        heading = f"What each part adds: {names[FULL_METHOD]} against the row, on fold UA averaged over seeds:"
        lines += ["", heading, "", "| Row | Ours − row | Ours better on | p |", "|---|---|---|---|"]
        for row, c in against_ours.items():
            lines.append(f"| {names[row]} | {c['mean_difference']:+.2f} | {c['wins']}/{c['folds']} | {format_p(c)} |")
    if teachers := report["teachers_alone"]:
        lines += ["", "Each teacher alone (its test UA, the mean over folds), mean ± std over seeds, and its accuracy per "
                  "emotion carrier averaged over seeds (%):", ""]  # fmt: skip
        lines += ["| Teacher | test UA | test WA | words | voice | both |", "|---|---|---|---|---|---|"]
        for name, scores in teachers.items():
            ua, wa, cells = scores["ua"], scores["wa"], carrier_cells(scores.get("per_carrier"))
            lines.append(
                f"| {name} | {pm(ua['mean'], ua['std'], ua['n'])} | {pm(wa['mean'], wa['std'], wa['n'])} | {cells} |"
            )
    carriers = report["per_carrier_accuracy_averaged_over_seeds"]
    if all(carriers.values()):
        carrier_names = list(next(iter(carriers.values())))
        lines += ["", "Accuracy per emotion carrier, averaged over seeds (%):", ""]
        lines += [f"| Row | {' | '.join(carrier_names)} |", "|---|" + "---|" * len(carrier_names)]
        for row, values in carriers.items():
            cells = " | ".join(percent(v) for v in values.values())
            lines.append(f"| {names[row]} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
