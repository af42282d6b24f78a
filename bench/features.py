"""eGeMAPS extraction over a corpus (`data_scripts.egemaps.add_egemaps`): one process against all cores, and a cached
rerun against the first run.

The corpus is a synthetic IEMOCAP (`generate_synthetic_iemocap`, espeak-ng speech) read with `load_iemocap`. Each
repetition times three calls on *fresh on-disk copies* of that dataset (`save_to_disk` + `load_from_disk` into new
folders, so `add_egemaps` finds no cache file for the timed cold runs):

* `one_process`: `add_egemaps(copy_a, num_proc=1)`;
* `all_cores`: `add_egemaps(copy_b, num_proc=os.cpu_count())`; target one_process / all_cores >= 1.7 on 2 cores;
* `cached_rerun`: `add_egemaps(copy_a, num_proc=1)` again, which reloads the cache file the first call wrote;
  target cached_rerun / one_process <= 0.05.

    python bench/features.py
    python bench/features.py --quick
"""

import os
import tempfile
from functools import partial
from pathlib import Path

import datasets
from common import apply_threads, base_parser, ratio_summary, side_summary, time_call, write_result

from emodistill.data_scripts.egemaps import add_egemaps
from emodistill.data_scripts.iemocap import load_iemocap
from emodistill.data_scripts.synthetic_iemocap import generate_synthetic_iemocap


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=7)
    parser.add_argument("--utterances_per_speaker", type=int, default=30, help="synthetic corpus size (10 speakers)")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    utterances_per_speaker = 2 if args.quick else args.utterances_per_speaker
    repetitions = 2 if args.quick else args.repetitions
    num_proc = os.cpu_count() or 1
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate_synthetic_iemocap(
            tmp / "corpus", utterances_per_speaker=utterances_per_speaker, other_utterances_per_speaker=0
        )
        corpus = load_iemocap(root, cache_dir=tmp / "cache")
        audio_seconds = float(sum(corpus["end"]) - sum(corpus["start"]))

        def fresh_copy(tag: str) -> datasets.Dataset:
            corpus.save_to_disk(tmp / tag)
            return datasets.load_from_disk(str(tmp / tag))

        times = {"one_process": [], "all_cores": [], "cached_rerun": []}
        add_egemaps(fresh_copy("warmup"), num_proc=1)  # first decode / openSMILE start-up outside the timings
        for rep in range(repetitions):
            copy_a, copy_b = fresh_copy(f"a{rep}"), fresh_copy(f"b{rep}")
            cold = {"one_process": (copy_a, 1), "all_cores": (copy_b, num_proc)}
            for side in list(cold)[rep % 2 :] + list(cold)[: rep % 2]:  # alternate which runs first
                dataset, processes = cold[side]
                times[side].append(time_call(partial(add_egemaps, dataset, num_proc=processes)))
            times["cached_rerun"].append(time_call(partial(add_egemaps, copy_a, num_proc=1)))

    parallel = ratio_summary(times["one_process"], times["all_cores"])
    cached = ratio_summary(times["cached_rerun"], times["one_process"])
    path = write_result(
        "features",
        {
            "quick": args.quick,
            "repetitions": repetitions,
            "utterances": len(corpus),
            "audio_seconds": audio_seconds,
            "num_proc_all_cores": num_proc,
            "target": {"parallel_speedup": ">= 1.7 (2 cores)", "cached_over_first_run": "<= 0.05"},
            "sides": {side: side_summary(t) for side, t in times.items()},
            "parallel_speedup": parallel,
            "cached_over_first_run": cached,
        },
        args.output,
    )
    print(
        f"{len(corpus)} utterances ({audio_seconds:.0f} s of audio): one process "
        f"{side_summary(times['one_process'])['median_s']:.2f} s, {num_proc} processes "
        f"{side_summary(times['all_cores'])['median_s']:.2f} s -> speed-up {parallel['median_ratio']:.2f}x "
        f"(target >= 1.7); cached rerun {100 * cached['median_ratio']:.2f}% of the first run (target <= 5%)"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
