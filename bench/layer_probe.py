"""What the pretrained student's layers hold of each emotion carrier, before any fine-tuning: a linear probe per layer.

For every utterance of the corpus, each hidden state of the student checkpoint (layer 0: the projected CNN features
after the positional convolution; then each transformer layer) is mean-pooled over time. Per fold of the
speaker-independent protocol, a multinomial logistic regression (features standardised on the training speakers, L2
weight `--l2`, full-batch L-BFGS; nothing is selected, so no split but the training one is looked at) is fitted on the
fold's training speakers and scored on its test speaker(s). The reference probe is the same regression on eGeMAPS
functionals (mean and standard deviation of the 25 low-level descriptors over the utterance): the prosodic teacher's
input. Reported per probe: test UA (mean over folds) and, on the synthetic corpus, accuracy per emotion carrier
(words / voice / both) pooled over folds.

A layer that probes well on voice-only utterances holds the voice's emotion; fine-tuning on few utterances then has it
within reach. One that probes near chance has (linearly) discarded it.

    python bench/layer_probe.py              # the bundled student, the embedded default corpus: about 3 min, 2 cores
    python bench/layer_probe.py --student_model_name_or_path facebook/hubert-base-ls960 --data_dir .../IEMOCAP_full_release
    python bench/layer_probe.py --quick      # 4 utterances per speaker, folds 1-2
"""

import numpy as np
import torch
from common import apply_threads, base_parser, fold_scores, ua_and_carrier_rows, write_result
from transformers import AutoFeatureExtractor, HubertModel

from emodistill.data_scripts.audio import SAMPLING_RATE
from emodistill.data_scripts.corpus import prepare_corpus
from emodistill.data_scripts.folds import fold_specs
from emodistill.data_scripts.generated_folder import DEFAULT_CACHE_DIR
from emodistill.trainers.reporting import pooled_carrier_accuracy
from emodistill.trainers.student import BUNDLED_STUDENT, resolve_student

EGEMAPS = "egemaps_functionals"


@torch.no_grad()
def layer_features(model_path: str, waveforms) -> np.ndarray:
    """Mean-pooled hidden states `(utterances, layers + 1, hidden)` of the checkpoint, one utterance at a time (no
    padding enters a mean)."""
    extractor = AutoFeatureExtractor.from_pretrained(model_path)
    model = HubertModel.from_pretrained(model_path).eval()
    pooled = []
    for waveform in waveforms:
        inputs = extractor(np.asarray(waveform, dtype=np.float32), sampling_rate=SAMPLING_RATE, return_tensors="pt")
        hidden = model(inputs.input_values, output_hidden_states=True).hidden_states
        pooled.append(torch.stack([h[0].mean(0) for h in hidden]).numpy())
    return np.stack(pooled)


def egemaps_functionals(descriptors) -> np.ndarray:
    """`(utterances, 50)`: mean and standard deviation of each eGeMAPS low-level descriptor over the utterance."""
    return np.stack([np.concatenate([np.mean(d, 0), np.std(d, 0)]) for d in map(np.asarray, descriptors)])


def fit_and_predict(train_x, train_y, test_x, num_labels: int, l2: float) -> np.ndarray:
    """Multinomial logistic regression on standardised features: the test set's predicted class ids."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x = torch.from_numpy((train_x - mean) / std).float()
    y = torch.from_numpy(train_y).long()
    linear = torch.nn.Linear(x.shape[1], num_labels)
    # A convex problem: any start reaches the optimum; a fixed one makes the run repeatable.
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return linear(torch.from_numpy((test_x - mean) / std).float()).argmax(-1).numpy()


def probe(features: np.ndarray, corpus, specs, l2: float) -> dict:
    """One probe over every fold: fold UAs, their mean, and accuracy per carrier pooled over folds."""
    ids, num_labels = list(corpus.dataset["id"]), len(corpus.label_names)
    labels, speakers = np.asarray(corpus.dataset["label"]), np.asarray(corpus.dataset["speaker"])
    folds = []
    for spec in specs:
        train, test = np.isin(speakers, spec.train), np.isin(speakers, spec.test)
        predictions = fit_and_predict(features[train], labels[train], features[test], num_labels, l2)
        test_ids = [ids[i] for i in np.flatnonzero(test)]
        folds.append(fold_scores(test_ids, labels[test], predictions, corpus.carriers, num_labels))
    fold_ua = [f["ua"] for f in folds]
    return {"ua": float(np.mean(fold_ua)), "fold_ua": fold_ua, "per_carrier": pooled_carrier_accuracy(folds)}


def markdown(report: dict) -> str:
    lines = [
        f"# Linear probes of `{report['student']}` on {report['corpus']}",
        "",
        f"`{report['machine']['command']}`; test UA (mean over {report['folds']} folds) and accuracy per emotion "
        "carrier pooled over folds, in %. Layer 0: projected CNN features; eGeMAPS: the prosodic teacher's input.",
        "",
        "| Probe on | UA | words | voice | both |",
        "|---|---|---|---|---|",
    ]
    lines += ua_and_carrier_rows(report["probes"])
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = base_parser(__doc__.split("\n")[0], repetitions=1)
    parser.add_argument("--student_model_name_or_path", default=BUNDLED_STUDENT)
    parser.add_argument("--data_dir", default=None, help="an IEMOCAP_full_release (default: the synthetic corpus)")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--synthetic_utterances_per_speaker", type=int, default=45)
    parser.add_argument("--protocol", default="loso10", choices=["loso10", "loso5"])
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 weight of the probes (fixed, never tuned)")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    utterances = 4 if args.quick else args.synthetic_utterances_per_speaker
    corpus = prepare_corpus(args.data_dir, args.cache_dir, synthetic_utterances_per_speaker=utterances)
    specs = fold_specs(corpus.dataset, args.protocol)[: 2 if args.quick else None]
    layers = layer_features(resolve_student(args.student_model_name_or_path), corpus.dataset["input_values"])
    features = {f"layer {i}": layers[:, i] for i in range(layers.shape[1])}
    features[EGEMAPS] = egemaps_functionals(corpus.dataset["egemaps"])
    probes = {name: probe(x, corpus, specs, args.l2) for name, x in features.items()}
    report = {
        "quick": args.quick,
        "student": args.student_model_name_or_path,
        "corpus": corpus.name,
        "folds": len(specs),
        "l2": args.l2,
        "probes": probes,
    }
    path = write_result("layer_probe", report, args.output, markdown)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
