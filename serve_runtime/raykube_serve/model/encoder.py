"""Texts in, unit-length sentence embeddings out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

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


# Token rows per forward pass. numpy: past ~256 rows the element-wise work
# (GELU, softmax, layer norm) stops fitting in cache and a big batch costs
# more per text than small ones (measured: 16 passages of ~50 tokens cost
# 26 ms CPU/text in one pass, 17 ms in 256-token chunks, 19 ms one by one).
# A GPU wants the whole batch at once.
TOKENS_PER_PASS = {"numpy": 256, "torch-cpu": 256, "cuda": 32768}


def plan_passes(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Groups text indices by similar length, each group padded to <= budget tokens.

    Sorting by length first keeps padding small; a text longer than the
    budget still gets a pass of its own.
    """
    passes: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted ascending: this text sets the group's padded length.
        if current and (len(current) + 1) * lengths[index] > budget:
            passes.append(current)
            current = []
        current.append(index)
    if current:
        passes.append(current)
    return passes


class SentenceEncoder:
    """all-MiniLM-L6-v2: BERT, mean pooling over real tokens, L2 norm."""

    def __init__(self, tokenizer: Any, forward: Forward, config: BertConfig, backend: str) -> None:
        self._tokenizer = tokenizer
        self._forward = forward
        self.config = config
        self.backend = backend
        self.tokens_per_pass = TOKENS_PER_PASS[backend]

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    @classmethod
    def load(cls, directory: Path | None = None, backend: str | None = None) -> SentenceEncoder:
        directory = directory or model_dir()
        config = load_config(directory)
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # The packaged tokenizer pads every text to 128 tokens; padding is
        # done per pass here instead, and truncation where
        # sentence-transformers truncates for this model.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=config.max_seq_length)
        chosen = select_backend(backend)
        forward: Forward
        if chosen == "numpy":
            forward = NumpyBert(load_weights(directory), config)
        else:
            from raykube_serve.model.bert_torch import TorchBert

            forward = TorchBert(directory, config, "cuda" if chosen == "cuda" else "cpu")
        return cls(tokenizer, forward, config, chosen)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> F32:
        ids = self.token_ids(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for group in plan_passes([len(i) for i in ids], self.tokens_per_pass):
            batch, mask = pad([ids[i] for i in group])
            out[group] = mean_pool_normalize(self._forward(batch, mask), mask)
        return out


def pad(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[I64, I64]:
    """Right-pads to the longest sequence; the mask marks real tokens."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def mean_pool_normalize(hidden: F32, mask: I64) -> F32:
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    result: F32 = (pooled / norms).astype(np.float32)
    return result
