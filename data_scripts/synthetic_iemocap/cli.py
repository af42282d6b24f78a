"""`emodistill-synthetic-iemocap`: write the synthetic corpus from the command line and summarise it."""

import argparse
import logging
import time
from collections import Counter

from .release import generate_synthetic_iemocap, read_manifest
from .tables import CARRIERS, DEFAULT_CARRIER_PROPORTIONS, FOUR_CLASS_CODE_WEIGHTS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="emodistill-synthetic-iemocap",
        description="Write a synthetic corpus in the IEMOCAP_full_release layout (espeak-ng speech, made-up labels).",
    )
    parser.add_argument("--output_dir", required=True, help="folder that receives IEMOCAP_full_release/")
    parser.add_argument(
        "--utterances_per_speaker", type=int, default=45, help="4-class turns per speaker (10 speakers)"
    )
    parser.add_argument(
        "--other_utterances_per_speaker", type=int, default=9, help="turns per speaker with other codes"
    )
    parser.add_argument(
        "--carrier_proportions",
        type=float,
        nargs=3,
        metavar=("WORDS", "VOICE", "BOTH"),
        default=[DEFAULT_CARRIER_PROPORTIONS[c] for c in CARRIERS],
        help="share of utterances whose emotion is in the words only, the voice only, or both (sum to 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=None, help="parallel espeak-ng processes (default: CPUs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    root = generate_synthetic_iemocap(
        args.output_dir,
        utterances_per_speaker=args.utterances_per_speaker,
        other_utterances_per_speaker=args.other_utterances_per_speaker,
        carrier_proportions=dict(zip(CARRIERS, args.carrier_proportions)),
        seed=args.seed,
        num_workers=args.num_workers,
    )
    rows = read_manifest(root)
    four_class = sum(row["emotion"] in FOUR_CLASS_CODE_WEIGHTS for row in rows)
    print(f"Synthetic IEMOCAP corpus at {root} ({time.perf_counter() - started:.1f} s)")
    print(f"{len(rows)} utterances, {four_class} with a 4-class code, {len({r['speaker'] for r in rows})} speakers")
    print("codes:", dict(sorted(Counter(row["emotion"] for row in rows).items())))
    print("carriers:", dict(Counter(row["carrier"] for row in rows)))


if __name__ == "__main__":
    main()
