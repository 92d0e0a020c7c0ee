"""The same BERT forward pass in torch, for replicas that were given a GPU.

Only imported when torch is installed (`pip install .[torch]`); the image
without torch serves on CPU through `bert_numpy`. The weights are the same
safetensors file; no transformers or sentence-transformers code is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from safetensors.torch import load_file

from raykube_serve.model.files import BertConfig


class TorchBert:
    """Token ids in, last hidden states out, computed on `device`."""

    def __init__(self, directory: Path, config: BertConfig, device: str) -> None:
        self._torch = torch
        self.config = config
        self.device = device
        raw = load_file(str(directory / "model.safetensors"), device=device)
        self._w: dict[str, Any] = {k.removeprefix("bert."): v.float() for k, v in raw.items()}

    def __call__(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.as_tensor(input_ids, device=self.device)
            mask = torch.as_tensor(attention_mask, device=self.device).bool()
            hidden = self._forward(ids, mask)
            return hidden.float().cpu().numpy()  # type: ignore[no-any-return]

    def _forward(self, ids: Any, mask: Any) -> Any:
        f = self._torch.nn.functional
        w, cfg = self._w, self.config
        eps = cfg.layer_norm_eps
        tokens = ids.shape[1]
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:tokens][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = f.layer_norm(
            x,
            (cfg.hidden_size,),
            w["embeddings.LayerNorm.weight"],
            w["embeddings.LayerNorm.bias"],
            eps,
        )
        attn_mask = mask[:, None, None, :]
        for i in range(cfg.num_layers):
            x = self._layer(x, attn_mask, f"encoder.layer.{i}.")
        return x

    def _layer(self, x: Any, attn_mask: Any, pre: str) -> Any:
        f = self._torch.nn.functional
        w, cfg = self._w, self.config
        batch, tokens, hidden = x.shape

        def heads(name: str) -> Any:
            y = f.linear(
                x, w[f"{pre}attention.self.{name}.weight"], w[f"{pre}attention.self.{name}.bias"]
            )
            return y.view(batch, tokens, cfg.num_heads, cfg.head_dim).transpose(1, 2)

        context = f.scaled_dot_product_attention(
            heads("query"), heads("key"), heads("value"), attn_mask
        )
        context = context.transpose(1, 2).reshape(batch, tokens, hidden)
        attn = f.linear(
            context,
            w[pre + "attention.output.dense.weight"],
            w[pre + "attention.output.dense.bias"],
        )
        x = f.layer_norm(
            x + attn,
            (hidden,),
            w[pre + "attention.output.LayerNorm.weight"],
            w[pre + "attention.output.LayerNorm.bias"],
            cfg.layer_norm_eps,
        )
        up = f.gelu(
            f.linear(x, w[pre + "intermediate.dense.weight"], w[pre + "intermediate.dense.bias"])
        )
        down = f.linear(up, w[pre + "output.dense.weight"], w[pre + "output.dense.bias"])
        return f.layer_norm(
            x + down,
            (hidden,),
            w[pre + "output.LayerNorm.weight"],
            w[pre + "output.LayerNorm.bias"],
            cfg.layer_norm_eps,
        )
