"""Texts in, unit-length sentence embeddings out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from raykube_serve.model.bert_numpy import NumpyBert
from raykube_serve.model.files import BertConfig, load_config, load_weights, model_dir

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Forward = Callable[[I64, I64], F32]

# "auto" (default): torch on CUDA when a GPU is visible and torch is
# installed, numpy otherwise. "numpy" or "torch" force one.
BACKEND_ENV = "RAYKUBE_EMBEDDING_BACKEND"


def select_backend(requested: str | None = None) -> str:
    """Returns "cuda", "torch-cpu" or "numpy" for this process."""
    choice = (requested or os.environ.get(BACKEND_ENV) or "auto").lower()
    if choice == "numpy":
        return "numpy"
    try:
        import torch
    except ImportError:
        if choice == "torch":
            raise
        return "numpy"
    if torch.cuda.is_available():
        return "cuda"
    # Without a GPU, numpy is as fast as torch for this small model and does
    # not need torch at all, so "auto" only picks torch for a GPU.
    return "torch-cpu" if choice == "torch" else "numpy"


class SentenceEncoder:
    """all-MiniLM-L6-v2: BERT, mean pooling over real tokens, L2 norm."""

    def __init__(self, tokenizer: Any, forward: Forward, config: BertConfig, backend: str) -> None:
        self._tokenizer = tokenizer
        self._forward = forward
        self.config = config
        self.backend = backend

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @classmethod
    def load(cls, directory: Path | None = None, backend: str | None = None) -> SentenceEncoder:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = load_config(directory)
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The packaged tokenizer pads every text to 128 tokens; pad to the
        # longest text of each batch instead and truncate where
        # sentence-transformers does for this model.
        tokenizer.enable_truncation(max_length=config.max_seq_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        chosen = select_backend(backend)
        forward: Forward
        if chosen == "numpy":
            forward = NumpyBert(load_weights(directory), config)
        else:
            from raykube_serve.model.bert_torch import TorchBert

            forward = TorchBert(directory, config, "cuda" if chosen == "cuda" else "cpu")
        return cls(tokenizer, forward, config, chosen)

    def tokenize(self, texts: Sequence[str]) -> tuple[I64, I64]:
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def encode(self, texts: Sequence[str]) -> F32:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = self.tokenize(texts)
        hidden = self._forward(ids, mask)
        return mean_pool_normalize(hidden, mask)


def mean_pool_normalize(hidden: F32, mask: I64) -> F32:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: F32 = (pooled / norms).astype(np.float32)
    return result
