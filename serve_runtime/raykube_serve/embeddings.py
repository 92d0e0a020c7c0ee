"""Sentence-embedding service: `POST /embed {"texts": [...]}` (or `{"text": ...}`).

Every text goes through one `@serve.batch` queue, so texts from many
concurrent requests (and the texts of one request) are encoded together.
`user_config` tunes the batching at run time without restarting replicas:

    user_config: {max_batch_size: 16, batch_wait_timeout_s: 0.01}

A request body is read up to ``max_request_bytes`` (also a ``user_config``
key; by default the largest valid request, see ``MAX_REQUEST_BYTES``); past
it the answer is 413 and the rest is never read.

`ray_actor_options.num_gpus` in the serve config is honoured by Ray (the
replica only starts on a node with a free GPU and sees it); the encoder then
runs in torch on CUDA when torch is installed, in numpy otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import ray
import yaml
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube_serve.bodies import json_body
from raykube_serve.model import SentenceEncoder

log = logging.getLogger("ray.serve")

DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_BATCH_WAIT_TIMEOUT_S = 0.01
# One request may carry at most this many texts (bounded work per request).
MAX_TEXTS_PER_REQUEST = 64
MAX_TEXT_CHARS = 10_000
#: The largest valid request: every text at its longest, each character
#: escaped by the client's JSON encoder (``\uXXXX``, 6 bytes), plus room for
#: the envelope. About 3.7 MiB.
MAX_REQUEST_BYTES = MAX_TEXTS_PER_REQUEST * MAX_TEXT_CHARS * 6 + 64 * 1024
#: What ``user_config.max_request_bytes`` may set.
REQUEST_BYTES_RANGE = (1024, 64 * 2**20)


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_TIMEOUT_S
    max_request_bytes: int = MAX_REQUEST_BYTES

    @classmethod
    def from_user_config(cls, config: dict[str, Any]) -> BatchSettings:
        size = config.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)
        wait = config.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_TIMEOUT_S)
        cap = config.get("max_request_bytes", MAX_REQUEST_BYTES)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 512:
            raise ValueError(f"max_batch_size must be an integer in [1, 512], got {size!r}")
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= 10:
            raise ValueError(f"batch_wait_timeout_s must be in [0, 10] seconds, got {wait!r}")
        low, high = REQUEST_BYTES_RANGE
        if not isinstance(cap, int) or isinstance(cap, bool) or not low <= cap <= high:
            raise ValueError(
                f"max_request_bytes must be an integer in [{low}, {high}], got {cap!r}"
            )
        return cls(size, float(wait), cap)


def parse_texts(payload: Any) -> list[str]:
    """The texts of a request body, or ValueError with a message for the caller."""
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        texts = [payload["text"]]
    elif isinstance(payload, dict) and isinstance(payload.get("texts"), list):
        texts = payload["texts"]
    else:
        raise ValueError('body must be {"text": "..."} or {"texts": ["...", ...]}')
    if not texts or len(texts) > MAX_TEXTS_PER_REQUEST:
        raise ValueError(f"send between 1 and {MAX_TEXTS_PER_REQUEST} texts")
    if not all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT_CHARS for t in texts):
        raise ValueError(f"each text must be a non-empty string of at most {MAX_TEXT_CHARS} chars")
    return texts


class EmbeddingModel:
    """One replica: the encoder loaded once, texts batched across requests."""

    def __init__(self) -> None:
        self._encoder = SentenceEncoder.load()
        self._settings = BatchSettings()
        gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        log.info(
            "Embedder ready: backend=%s gpus=%s dim=%d",
            self._encoder.backend,
            gpus,
            self._encoder.dim,
        )
        if gpus and self._encoder.backend != "cuda":
            # Still serves (numpy on CPU), but the reserved GPU sits idle:
            # the image was built without torch (WITH_TORCH=false).
            log.warning("GPU %s reserved but torch/CUDA unavailable; encoding on CPU", gpus)

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._settings = BatchSettings.from_user_config(config)
        # serve.batch's wrapper carries setters its type hints do not show.
        handler: Any = self._embed_batch
        handler.set_max_batch_size(self._settings.max_batch_size)
        handler.set_batch_wait_timeout_s(self._settings.batch_wait_timeout_s)

    @serve.batch(
        max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_TIMEOUT_S
    )
    async def _embed_batch(self, texts: list[str]) -> list[tuple[list[float], int]]:
        # The forward pass runs in a worker thread (numpy releases the GIL in
        # its kernels) so the replica keeps accepting and queueing requests
        # for the next batch meanwhile.
        vectors = await asyncio.to_thread(self._encoder.encode, texts)
        return [(row.tolist(), len(texts)) for row in vectors]

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        results = await asyncio.gather(*(self._embed_batch(t) for t in texts))
        return [vector for vector, _ in results], [size for _, size in results]

    async def __call__(self, request: Request) -> JSONResponse:
        payload, error = await json_body(request, self._settings.max_request_bytes)
        if error is not None:
            return error
        try:
            texts = parse_texts(payload)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        vectors, batch_sizes = await self.embed(texts)
        return JSONResponse(
            {
                "model": "all-MiniLM-L6-v2",
                "dim": self._encoder.dim,
                "backend": self._encoder.backend,
                "embeddings": vectors,
                # Size of the batch each text was encoded in: shows batching at work.
                "batch_sizes": batch_sizes,
            }
        )

    def check_health(self) -> None:
        # A cheap end-to-end check of the loaded model; Serve replaces the
        # replica if this raises.
        if not np.isfinite(self._encoder.encode(["ok"])).all():
            raise RuntimeError("encoder produced non-finite values")


Embedder = serve.deployment(
    name="Embedder",
    ray_actor_options={"num_cpus": 1},
    # A replica must accept at least max_batch_size requests at once or
    # batches can never fill; twice that lets the next batch gather while
    # one is being computed.
    max_ongoing_requests=2 * DEFAULT_MAX_BATCH_SIZE,
    # Bounded queue per caller (the proxy included): past it, 503 at once.
    max_queued_requests=4 * DEFAULT_MAX_BATCH_SIZE,
    user_config={
        "max_batch_size": DEFAULT_MAX_BATCH_SIZE,
        "batch_wait_timeout_s": DEFAULT_BATCH_WAIT_TIMEOUT_S,
    },
)(EmbeddingModel)

app = Embedder.bind()


def sample_config() -> dict[str, Any]:
    """configs/embeddings.yaml: the serve config with autoscaling, as a dict."""
    text = (resources.files("raykube_serve") / "configs" / "embeddings.yaml").read_text()
    config: dict[str, Any] = yaml.safe_load(text)
    return config
