"""Model checkpoints that ship with the package (folders in the hub's layout, loadable with `from_pretrained`).

- `hubert-synthetic/`: the HuBERT student pretrained on unlabelled synthetic speech by `emodistill-pretrain-student`
  (its README.md says how, and with which command it is rebuilt); the embedded default's
  `--student_model_name_or_path emodistill-hubert-synthetic`.
"""
