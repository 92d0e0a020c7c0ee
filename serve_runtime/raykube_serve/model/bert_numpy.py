"""BERT encoder forward pass in numpy (inference only, float32).

Mirrors the Hugging Face BertModel computation for absolute position
embeddings and erf GELU, which is what all-MiniLM-L6-v2 uses. Weights are
transposed once at load time so every projection is a plain `x @ W`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from raykube_serve.model.files import BertConfig, Weights

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Layer:
    qkv_w: F32  # (hidden, 3*hidden): one matmul for query, key and value
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_g: F32
    ln1_b: F32
    up_w: F32
    up_b: F32
    down_w: F32
    down_b: F32
    ln2_g: F32
    ln2_b: F32


def _erf(x: F32) -> F32:
    # numpy has no erf; Abramowitz & Stegun 7.1.26 is accurate to 1.5e-7,
    # below float32 resolution for the magnitudes GELU sees.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    result: F32 = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def gelu(x: F32) -> F32:
    result: F32 = (0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)
    return result


def layer_norm(x: F32, gamma: F32, beta: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: F32 = ((x - mean) / np.sqrt(var + eps) * gamma + beta).astype(np.float32)
    return result


class NumpyBert:
    """Token ids in, last hidden states out: (batch, tokens, hidden)."""

    def __init__(self, weights: Weights, config: BertConfig) -> None:
        self.config = config
        self._word = weights["embeddings.word_embeddings.weight"]
        self._position = weights["embeddings.position_embeddings.weight"]
        self._token_type = weights["embeddings.token_type_embeddings.weight"]
        self._emb_g = weights["embeddings.LayerNorm.weight"]
        self._emb_b = weights["embeddings.LayerNorm.bias"]
        self._layers = [_load_layer(weights, i) for i in range(config.num_layers)]

    def __call__(self, input_ids: I64, attention_mask: I64) -> F32:
        batch, tokens = input_ids.shape
        cfg = self.config
        x = self._word[input_ids] + self._position[:tokens][None] + self._token_type[0]
        x = layer_norm(x, self._emb_g, self._emb_b, cfg.layer_norm_eps)
        # Padded keys get the most negative float, so softmax gives them
        # exactly zero weight: a text's embedding does not depend on the
        # other texts it is batched with.
        bias = np.where(attention_mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min)
        bias = bias.astype(np.float32)
        # Projections run on (batch*tokens, hidden): one large GEMM each.
        # numpy would loop a small GEMM per text on a 3-D array, twice as slow.
        flat = x.reshape(batch * tokens, cfg.hidden_size)
        for layer in self._layers:
            flat = self._layer(flat, layer, bias, batch, tokens)
        return flat.reshape(batch, tokens, cfg.hidden_size)

    def _layer(self, x: F32, p: _Layer, bias: F32, batch: int, tokens: int) -> F32:
        cfg = self.config
        heads, head_dim = cfg.num_heads, cfg.head_dim
        qkv = (x @ p.qkv_w + p.qkv_b).reshape(batch, tokens, 3, heads, head_dim)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_dim)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(head_dim)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * tokens, cfg.hidden_size)
        x = layer_norm(x + context @ p.out_w + p.out_b, p.ln1_g, p.ln1_b, cfg.layer_norm_eps)
        hidden = gelu(x @ p.up_w + p.up_b)
        return layer_norm(x + hidden @ p.down_w + p.down_b, p.ln2_g, p.ln2_b, cfg.layer_norm_eps)


def _load_layer(w: Weights, index: int) -> _Layer:
    pre = f"encoder.layer.{index}."

    def t(name: str) -> F32:
        return np.ascontiguousarray(w[pre + name].T)

    attn = pre + "attention.self."
    return _Layer(
        qkv_w=np.ascontiguousarray(
            np.concatenate([w[attn + n + ".weight"].T for n in ("query", "key", "value")], axis=1)
        ),
        qkv_b=np.concatenate([w[attn + n + ".bias"] for n in ("query", "key", "value")]),
        out_w=t("attention.output.dense.weight"),
        out_b=w[pre + "attention.output.dense.bias"],
        ln1_g=w[pre + "attention.output.LayerNorm.weight"],
        ln1_b=w[pre + "attention.output.LayerNorm.bias"],
        up_w=t("intermediate.dense.weight"),
        up_b=w[pre + "intermediate.dense.bias"],
        down_w=t("output.dense.weight"),
        down_b=w[pre + "output.dense.bias"],
        ln2_g=w[pre + "output.LayerNorm.weight"],
        ln2_b=w[pre + "output.LayerNorm.bias"],
    )
