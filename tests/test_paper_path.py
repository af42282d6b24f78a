"""The paper's GPU path, run on the CPU: checkpoints in the exact layouts of `facebook/hubert-base-ls960` and
`bert-base-uncased` (only smaller) through `--preset paper`, masks as the checkpoint says, and one job over two
accelerate "machines"."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import save_file
from transformers import BertConfig, BertForPreTraining, HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from emodistill.data_scripts.synthetic_iemocap import read_manifest
from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments
from emodistill.trainers.collator import evaluation_batch_size
from emodistill.trainers.metrics import first_output

from tiny_models import TINY_JOB_ARGS, tiny_student

REPO = Path(__file__).resolve().parent.parent
TINY_RUN = [*TINY_JOB_ARGS, "--folds", "1"]
# facebook/hubert-base-ls960's preprocessor_config.json: no attention mask for this group-norm model.
HUB_PREPROCESSOR = {
    "do_normalize": True,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
}


def hubert_base_layout(folder: Path) -> Path:
    """A tiny `facebook/hubert-base-ls960`: its conv layout and group norm, `architectures: ["HubertModel"]`, the
    hub's preprocessor config, and `pytorch_model.bin` under the hub's key names (weight-norm `weight_g`/`weight_v`)."""
    config = HubertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), feat_extract_norm="group",
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, architectures=["HubertModel"],
    )  # fmt: skip
    torch.manual_seed(0)
    state = HubertModel(config).state_dict()
    renamed = {
        re.sub(r"parametrizations\.weight\.original([01])", lambda m: "weight_g" if m[1] == "0" else "weight_v", k): v
        for k, v in state.items()
    }
    assert any(k.endswith("weight_g") for k in renamed) and not any(k.startswith("hubert.") for k in renamed)
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    torch.save(renamed, folder / "pytorch_model.bin")
    (folder / "preprocessor_config.json").write_text(json.dumps(HUB_PREPROCESSOR, indent=2))
    return folder


def bert_base_uncased_layout(folder: Path, words: list[str]) -> Path:
    """A tiny `bert-base-uncased`: config, `vocab.txt`, tokenizer config, and `BertForPreTraining` weights under the
    hub's key names (`bert.` prefix, LayerNorm `gamma`/`beta`, the `cls.` heads) as `model.safetensors`."""
    vocab = ["[PAD]", *[f"[unused{i}]" for i in range(5)], "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(words))]
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, architectures=["BertForMaskedLM"],
    )  # fmt: skip
    torch.manual_seed(0)
    state = BertForPreTraining(config).state_dict()
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    assert all(k.startswith(("bert.", "cls.")) for k in renamed)
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    save_file({k: v.clone().contiguous() for k, v in renamed.items()}, folder / "model.safetensors")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    return folder


def train(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_preset_paper_end_to_end_on_checkpoints_in_the_hub_layouts(tiny_iemocap_root, tmp_path):
    words = [w for row in read_manifest(tiny_iemocap_root) for w in re.findall(r"[a-z']+", row["text"].lower())]
    hubert = hubert_base_layout(tmp_path / "hub" / "facebook" / "hubert-base-ls960")
    bert = bert_base_uncased_layout(tmp_path / "hub" / "bert-base-uncased", words)
    output = tmp_path / "out"
    result = train(
        "--preset", "paper", "--use_cpu", "true",
        "--student_model_name_or_path", str(hubert), "--linguistic_teacher_name_or_path", str(bert),
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(output), *TINY_RUN,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    config, fold = results["config"], results["folds"][0]
    assert config["preset"] == "paper" and config["global_batch_size"] == 128
    assert (config["per_device_train_batch_size"], config["gradient_accumulation_steps"]) == (32, 4)
    assert config["teachers"]["prosodic_teacher_channels"] == [16, 32, 64, 128]
    assert fold["evaluation_batch_size"] == 1  # group norm, no attention mask: never a batch of mixed lengths
    assert fold["teachers"]["linguistic"]["trained_on_speakers"] and fold["n"] == 4
    saved = json.loads((output / "fold_01" / "model" / "preprocessor_config.json").read_text())
    assert saved["return_attention_mask"] is False
    # The hub-named weights were really loaded, not re-initialised.
    student = HubertModel.from_pretrained(hubert)
    from safetensors.torch import load_file

    weights = load_file(output / "fold_01" / "model" / "model.safetensors")
    torch.testing.assert_close(
        weights["hubert.feature_extractor.conv_layers.0.conv.weight"],
        student.feature_extractor.conv_layers[0].conv.weight,
    )


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_batched_evaluation_equals_one_by_one(norm, tmp_path):
    uses_mask = norm == "layer"
    model = tiny_student(feat_extract_norm=norm).eval()
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=uses_mask
    )
    rng = np.random.default_rng(0)
    rows = [
        {"input_values": rng.standard_normal(n).astype(np.float32), "label": i % 4}
        for i, n in enumerate([3000, 5200, 4100, 6000, 3500])
    ]
    collator = EmoDistillDataCollator(extractor)
    with torch.no_grad():
        alone = torch.cat(
            [model(**{k: v for k, v in collator([row]).items() if k != "labels"}).logits for row in rows]
        )

    def predict(batch_size):
        args = EmoDistillTrainingArguments(
            output_dir=str(tmp_path), per_device_eval_batch_size=batch_size, report_to="none", use_cpu=True,
            use_linguistic_teacher=False, use_prosodic_teacher=False,
        )  # fmt: skip
        trainer = EmoDistillTrainer(model=model, args=args, data_collator=collator)
        return torch.from_numpy(first_output(trainer.predict(Dataset.from_list(rows)).predictions))

    torch.testing.assert_close(predict(evaluation_batch_size(extractor, 4)), alone, atol=1e-5, rtol=0)
    if not uses_mask:  # the rule matters: a padded group-norm batch would change the outputs
        assert not torch.allclose(predict(4), alone, atol=1e-5)


def test_two_accelerate_machines_run_one_fold_as_one_job(tmp_path):
    """`--num_machines 2`, one process each, gloo on this host: one job, the teachers trained on both ranks."""
    processes = []
    for rank in (0, 1):
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
            "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", "29571",
            "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no",
            str(REPO / "train.py"), "--use_cpu", "--cache_dir", str(tmp_path / "cache"),
            "--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size", "4", *TINY_RUN,
        ]  # fmt: skip
        log = open(tmp_path / f"machine{rank}.log", "w")
        processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        )
    codes = [p.wait(timeout=900) for p in processes]
    assert codes == [0, 0], (tmp_path / "machine0.log").read_text()[-3000:] + (tmp_path / "machine1.log").read_text()[
        -3000:
    ]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    fold = results["folds"][0]
    assert results["config"]["world_size"] == 2
    assert fold["n"] == 4 == sum(map(sum, fold["confusion"]))  # every test utterance scored once
    for teacher in ("linguistic", "prosodic"):  # trained by both ranks together, cached once
        assert len(list((tmp_path / "cache" / "teachers" / teacher).iterdir())) == 1
    assert "teacher, epoch 1/1" in (tmp_path / "machine0.log").read_text()
