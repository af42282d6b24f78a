"""EmoDistill, the whole method as one command: per speaker-independent fold, train the linguistic and prosodic
teachers on the fold's training speakers (cached), distil them into the audio-only HuBERT student, and score it on
the held-out speaker.

With no arguments it runs on the embedded default: a synthetic corpus in the `IEMOCAP_full_release` layout (generated
on first use into `--cache_dir`), the HuBERT this project pretrains on unlabelled synthetic speech (shipped with the
package), the offline MiniLM linguistic teacher, all 10 folds, on the CPU or GPUs that accelerate finds:

    accelerate launch train.py                                   # or: python train.py
    accelerate launch train.py --ablation no_teachers --output_dir outputs/no_teachers   # the CE-only baseline

The real corpus with the paper's backbones and settings (global batch 128 on 1, 2, 4 or 8 GPUs):

    accelerate launch --multi_gpu --num_processes 4 train.py --preset paper \\
        --data_dir /data/IEMOCAP_full_release --output_dir outputs/paper_hubert_base

The paper's experiments:

    python train.py --ablation_table --seeds 0,1,2 --output_dir outputs/ablations   # Table 2, three seeds
    python train.py --tau_sweep prosodic=0.5,1,2,4 --output_dir outputs/tau_p     # Fig. 2 (left)

Fold-parallel jobs write into one folder, then one command gathers them (no retraining):

    python train.py --folds 3 --output_dir outputs/run        # one job per fold, e.g. a SLURM array
    python train.py --gather --output_dir outputs/run

Several CPU processes form one gloo group with `accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu`.
Every flag, with the default the job uses: `python train.py --help`.
"""

import logging
import os
import sys
import time

import datasets
import torch.distributed
import transformers

from emodistill.data_scripts.corpus import prepare_corpus
from emodistill.trainers.cross_validation import ablation_table, cross_validate, gather, tau_sweep
from emodistill.trainers.experiment import Experiment, parse_experiment
from emodistill.trainers.reporting import pm
from emodistill.trainers.results import ConfigurationMismatchError, git_commit, source_digest

logger = logging.getLogger("emodistill.train")


def check_one_distributed_job(experiment: Experiment) -> None:
    """Refuses to run when several processes were launched but did not join one group (each would redo the job)."""
    launched, world_size = int(os.environ.get("WORLD_SIZE", "1")), experiment.training.world_size
    if launched > 1 and world_size != launched:
        raise SystemExit(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but this one runs alone (world size "
            f"{world_size}): every process would run the whole job. On a machine without GPUs add --use_cpu "
            "(e.g. `accelerate launch --multi_gpu --num_processes 2 train.py --use_cpu`)."
        )


def setup_logging(experiment: Experiment) -> None:
    """One line per phase on the main process; progress bars only on a terminal (`--disable_tqdm`)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if experiment.training.should_log else logging.WARNING,
        handlers=[logging.StreamHandler(sys.stdout)],
        force=True,
    )
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()
    if experiment.training.disable_tqdm:
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def run(experiment: Experiment) -> dict:
    """The job the arguments ask for; returns the results of the (last) cross-validation or gathering."""
    if experiment.run.gather:
        return gather(experiment)
    data, training = experiment.data, experiment.training
    # The corpus is prepared once, by the main process (of every node without a shared disk), then read by all.
    with training.main_process_first(local=training.save_on_each_node, desc="preparing the corpus"):
        corpus = prepare_corpus(
            data.data_dir,
            data.cache_dir,
            label_set=data.label_set,
            skip_bad_audio=data.skip_bad_audio,
            force_reload=data.force_reload,
            synthetic_utterances_per_speaker=data.synthetic_utterances_per_speaker,
            num_proc=data.preprocessing_num_workers,
            egemaps_level_dbfs=experiment.teachers.prosodic_teacher_level_dbfs,
        )
    logger.info(
        "Corpus: %s, %d utterances (%s); %s, ablation %s, world size %d",
        corpus.name, len(corpus.dataset), corpus.data_dir, data.protocol, training.ablation, training.world_size,
    )  # fmt: skip
    if experiment.run.tau_sweep:
        return tau_sweep(experiment, corpus)
    if experiment.run.ablation_table:
        return ablation_table(experiment, corpus)
    return cross_validate(experiment, corpus)


def main(argv: list[str] | None = None) -> None:
    experiment = parse_experiment(sys.argv[1:] if argv is None else argv)
    check_one_distributed_job(experiment)
    setup_logging(experiment)
    source_digest(), git_commit()  # the code this process runs, read now: results name it, not a later commit's
    started = time.time()
    try:
        results = run(experiment)
    except (ConfigurationMismatchError, FileNotFoundError) as error:  # messages naming what to change, no traceback
        raise SystemExit(f"train.py: error: {error}") from None
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # a live gloo group at exit can abort the interpreter
    if experiment.training.should_save and "mean" in results:
        mean, std, n = results["mean"], results["std"], len(results["folds"])
        print(
            f"\n{n} fold(s) in {time.time() - started:.0f} s: WA {pm(mean['wa'], std['wa'], n)} %, "
            f"UA {pm(mean['ua'], std['ua'], n)} %  ->  {os.path.join(experiment.training.output_dir, 'results.md')}"
        )


if __name__ == "__main__":
    main()
