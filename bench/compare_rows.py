"""One row against another, seed by seed, from records of `bench/seeds.py`: e.g. the default against a CE-only that
reads other layers, or against a row measured on another day.

`bench/seeds.py` compares each row with the CE-only it trained beside it. When the baseline to beat is another row —
a variant of CE-only that validation prefers, say — its runs live in another record, and their folds must be paired
with the row's by seed. Every run of a record keeps its per-fold test and validation UA for this (`fold_ua`,
`fold_validation_ua`), so nothing is retrained or regathered here.

A side is one or more `RECORD:ROW` (a row folder of that record, e.g. `bench/results/seeds.json:alpha_0.25`); several
records join their seeds (each seed once per side). Both sides must hold every seed compared (`--seeds`, default: all
of either side's) and, per seed, the same folds.

Reported: per seed, each side's mean test and validation UA and the fold-by-fold comparison (wins, two-sided Wilcoxon
signed-rank p); over seeds, mean ± std of each side and of the difference, and the comparison on fold UA averaged over
seeds, on test and on validation (the validation one says which side a choice between them would take).

    python bench/compare_rows.py --row bench/results/seeds.json:alpha_0.25 --baseline \\
        bench/results/weighted_layer_sum.json:no_teachers bench/results/seeds_ce_only_weighted_layer_sum.json:no_teachers \\
        --baseline_name "CE-only, heads on a weighted sum of layers" --output bench/results/compare.json
"""

import argparse
import shlex
import sys
from pathlib import Path

from common import UA_LEGEND, per_fold_run, read_seeds_record, write_result

from emodistill.trainers.reporting import format_p, mean_std, paired_comparison

SIDES = ("row", "baseline")


def runs_by_seed(specs: list[str]) -> tuple[str, dict[int, dict]]:
    """The row's name and its runs, seed -> the record's run (`fold_ua`, `fold_validation_ua`, `mean`, ...), from
    `RECORD:ROW` specs.

    Raises:
        ValueError: a spec without `:ROW`, a file that is no `bench/seeds.py` record, a row the record lacks, a run
            without per-fold UA (recorded before the records kept it), or a seed twice.
    """
    names, runs = [], {}
    for spec in specs:
        record_path, separator, row = spec.rpartition(":")
        if not separator or not record_path or not row:
            raise ValueError(f"{spec!r}: expected RECORD:ROW, e.g. bench/results/seeds.json:alpha_0.25")
        record = read_seeds_record(record_path)
        if row not in record["rows"]:
            raise ValueError(f"{record_path} has no row {row!r}; its rows: {', '.join(record['rows'])}")
        names.append(record["rows"][row])
        for seed in record["seeds"]:
            if seed in runs:
                raise ValueError(f"seed {seed} of {spec} is already given by an earlier record of the same side")
            runs[seed] = {"record": record_path, **per_fold_run(record_path, record, f"{row}/seed_{seed}")}
    return " / ".join(dict.fromkeys(names)), runs


def by_fold(run: dict, key: str) -> dict[int, float]:
    return {int(fold): ua for fold, ua in run[key].items()}  # JSON keys are strings


def compare(row: dict[int, dict], baseline: dict[int, dict], seeds: list[int] | None = None) -> dict:
    """Seed -> run of each side, as `runs_by_seed` gives them, compared at `seeds` (default: every seed, which both
    sides must then hold).

    Raises:
        ValueError: a side lacks one of the seeds, or a seed's runs hold other folds.
    """
    seeds = sorted(seeds or set(row) | set(baseline))
    for side, runs in zip(SIDES, (row, baseline)):
        if missing := [seed for seed in seeds if seed not in runs]:
            raise ValueError(f"the {side} has no run at seed(s) {missing} (it has {sorted(runs)}): pass --seeds")
    for seed in seeds:
        if set(row[seed]["fold_ua"]) != set(baseline[seed]["fold_ua"]):
            raise ValueError(f"seed {seed}: the row has folds {sorted(row[seed]['fold_ua'])}, the baseline "
                             f"{sorted(baseline[seed]['fold_ua'])}")  # fmt: skip

    def over_seeds(key: str) -> dict:  # fold -> its UA at each seed, as `paired_comparison` takes
        sides = []
        for runs in (row, baseline):
            table = {}
            for seed in seeds:
                for fold, ua in by_fold(runs[seed], key).items():
                    table.setdefault(fold, []).append(ua)
            sides.append(table)
        return paired_comparison(*sides)

    per_seed = [
        {
            "seed": seed,
            **{f"{side}_ua": runs[seed]["mean"]["ua"] for side, runs in zip(SIDES, (row, baseline))},
            **{f"{side}_validation_ua": runs[seed]["validation_ua"] for side, runs in zip(SIDES, (row, baseline))},
            "test": paired_comparison(
                *({f: [ua] for f, ua in by_fold(r[seed], "fold_ua").items()} for r in (row, baseline))
            ),
        }
        for seed in seeds
    ]
    return {
        "seeds": seeds,
        "per_seed": per_seed,
        "over_seeds": {
            **{f"{side}_ua": mean_std([p[f"{side}_ua"] for p in per_seed]) for side in SIDES},
            **{f"{side}_validation_ua": mean_std([p[f"{side}_validation_ua"] for p in per_seed]) for side in SIDES},
            "ua_difference": mean_std([p["row_ua"] - p["baseline_ua"] for p in per_seed]),
            "test_on_fold_ua_averaged_over_seeds": over_seeds("fold_ua"),
            "validation_on_fold_ua_averaged_over_seeds": over_seeds("fold_validation_ua"),
        },
    }


def markdown(report: dict) -> str:
    names, over = report["names"], report["over_seeds"]
    lines = [
        f"# {names['row']} against {names['baseline']}",
        "",
        f"`{report['command']}`; {UA_LEGEND} Runs: "
        + "; ".join(f"{side}: {', '.join(report['specs'][side])}" for side in SIDES)
        + ".",
        "",
        "| Seed | row test UA | baseline test UA | difference | wins | p | row validation UA | baseline validation UA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in report["per_seed"]:
        c = p["test"]
        lines.append(
            f"| {p['seed']} | {p['row_ua']:.2f} | {p['baseline_ua']:.2f} | {c['mean_difference']:+.2f} | "
            f"{c['wins']}/{c['folds']} | {format_p(c)} | {p['row_validation_ua']:.2f} | "
            f"{p['baseline_validation_ua']:.2f} |"
        )
    if len(report["per_seed"]) > 1:
        c, d = over["test_on_fold_ua_averaged_over_seeds"], over["ua_difference"]
        row, baseline = over["row_ua"], over["baseline_ua"]
        row_val, baseline_val = over["row_validation_ua"], over["baseline_validation_ua"]
        lines.append(
            f"| mean ± std | {row['mean']:.2f} ± {row['std']:.2f} | {baseline['mean']:.2f} ± {baseline['std']:.2f} | "
            f"{d['mean']:+.2f} ± {d['std']:.2f} | {c['wins']}/{c['folds']} (fold UA averaged) | {format_p(c)} | "
            f"{row_val['mean']:.2f} | {baseline_val['mean']:.2f} |"
        )
        v = over["validation_on_fold_ua_averaged_over_seeds"]
        lines += ["", f"On validation (fold UA averaged over seeds): the row better on {v['wins']}/{v['folds']} folds, "
                  f"mean difference {v['mean_difference']:+.2f}, p = {format_p(v)}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", nargs="+", required=True, help="RECORD:ROW ... of bench/seeds.py records")
    parser.add_argument("--baseline", nargs="+", required=True, help="RECORD:ROW ... compared against")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: every seed of the records")
    for side in SIDES:  # a record names its rows by ablation and setting, not by the flags all its runs shared
        parser.add_argument(f"--{side}_name", default=None, help=f"the {side}'s name (default: its record's)")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON path (default: bench/results/compare_rows.json)"
    )
    args = parser.parse_args(argv)
    try:
        (row_name, row), (baseline_name, baseline) = runs_by_seed(args.row), runs_by_seed(args.baseline)
        comparison = compare(row, baseline, args.seeds)
    except (ValueError, FileNotFoundError, KeyError) as error:
        parser.error(str(error))
    report = {
        # Quoted as a shell needs it: a row's name may hold spaces.
        "command": shlex.join(["python", "bench/compare_rows.py", *(sys.argv[1:] if argv is None else argv)]),
        "specs": {"row": args.row, "baseline": args.baseline},
        "names": {"row": args.row_name or row_name, "baseline": args.baseline_name or baseline_name},
        **comparison,
        "runs": {
            side: {str(seed): runs[seed] for seed in comparison["seeds"]} for side, runs in zip(SIDES, (row, baseline))
        },
    }
    path = write_result("compare_rows", report, args.output, markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
