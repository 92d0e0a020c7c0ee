"""The embedding service: shapes, batching invariance, reference values."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import ray  # noqa: F401  (a missing Ray must fail this tier, not skip it)

from raykube_serve.embeddings import MAX_REQUEST_BYTES, MAX_TEXT_CHARS, MAX_TEXTS_PER_REQUEST
from raykube_serve.model import SentenceEncoder
from raykube_serve.model.encoder import pad, plan_passes

from .helpers import Deploy, find_deployment

pytestmark = pytest.mark.ray

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Ray Serve scales replicas with load.",
    "短文本",
    "Autoscaling adds replicas when queues grow, and removes them when traffic stops.",
]


def embed(serve_url: str, texts: list[str]) -> dict[str, Any]:
    response = httpx.post(f"{serve_url}/embed/", json={"texts": texts}, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_matches_sentence_transformers_reference() -> None:
    # Reference embeddings were computed by sentence-transformers (torch) from
    # the same packaged model: bench/embedding_reference.py --write.
    reference = json.loads(REFERENCE.read_text())
    expected = np.asarray(reference["embeddings"], dtype=np.float32)
    ours = SentenceEncoder.load(backend="numpy").encode(reference["texts"])
    cosine = (ours * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.999
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_service_returns_unit_vectors_of_the_model_dimension(serve_url: str) -> None:
    body = embed(serve_url, TEXTS)
    vectors = np.asarray(body["embeddings"])
    assert body["dim"] == 384 and body["model"] == "all-MiniLM-L6-v2"
    assert vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    # Two sentences about eating are closer than eating and carrying a baby.
    assert similarity[0, 1] > 0.6 > similarity[0, 2]
    single = httpx.post(f"{serve_url}/embed/", json={"text": TEXTS[0]}, timeout=60).json()
    assert np.asarray(single["embeddings"]).shape == (1, 384)


async def test_same_text_same_vector_batched_or_not(serve_url: str) -> None:
    alone = [np.asarray(embed(serve_url, [t])["embeddings"][0]) for t in TEXTS]
    together = np.asarray(embed(serve_url, TEXTS)["embeddings"])
    async with httpx.AsyncClient(base_url=serve_url, timeout=60) as client:
        responses = await asyncio.gather(
            *(client.post("/embed/", json={"text": t}) for t in TEXTS * 2)
        )
    concurrent = [r.json() for r in responses]
    # Texts of one request, and of concurrent requests, share batches...
    assert max(together_sizes := embed(serve_url, TEXTS)["batch_sizes"]) > 1, together_sizes
    assert max(b["batch_sizes"][0] for b in concurrent) > 1
    # ...and padding to the batch's longest text changes nothing.
    np.testing.assert_allclose(together, np.stack(alone), atol=1e-5)
    for body, expected in zip(concurrent, alone * 2, strict=True):
        np.testing.assert_allclose(body["embeddings"][0], expected, atol=1e-5)


async def test_max_batch_size_comes_from_user_config(
    base_config: dict[str, Any], deploy: Deploy, serve_url: str
) -> None:
    unbatched = copy.deepcopy(base_config)
    find_deployment(unbatched, "embeddings", "Embedder")["user_config"]["max_batch_size"] = 1
    deploy(unbatched)
    try:
        sizes = await wait_for_max_batch(serve_url, 1)
        assert sizes == [1] * len(TEXTS)
    finally:
        deploy(base_config)


async def wait_for_max_batch(serve_url: str, expected: int, tries: int = 50) -> list[int]:
    # PUT answers before reconfigure() has run: poll until the new size shows.
    sizes: list[int] = []
    for _ in range(tries):
        async with httpx.AsyncClient(base_url=serve_url, timeout=60) as client:
            responses = await asyncio.gather(
                *(client.post("/embed/", json={"text": t}) for t in TEXTS)
            )
        sizes = [r.json()["batch_sizes"][0] for r in responses]
        if max(sizes) <= expected:
            return sizes
        await asyncio.sleep(0.2)
    return sizes


@pytest.mark.parametrize(
    "body", [{}, {"texts": []}, {"texts": [""]}, {"texts": ["a"] * 65}, {"text": 3}]
)
def test_bad_requests_get_400(serve_url: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{serve_url}/embed/", json=body, timeout=30)
    assert response.status_code == 400
    assert "error" in response.json()


def test_a_body_over_the_cap_gets_413(serve_url: str) -> None:
    body = b'{"texts": ["' + b"x" * MAX_REQUEST_BYTES + b'"]}'
    response = httpx.post(f"{serve_url}/embed/", content=body, timeout=30)
    assert response.status_code == 413


def test_the_largest_valid_request_fits_under_the_cap() -> None:
    texts = ["\u00e9" * MAX_TEXT_CHARS] * MAX_TEXTS_PER_REQUEST  # escaped by json.dumps
    assert len(json.dumps({"texts": texts}).encode()) <= MAX_REQUEST_BYTES


def test_passes_group_similar_lengths_within_the_token_budget() -> None:
    lengths = [30, 5, 6, 31, 200, 7]
    passes = plan_passes(lengths, budget=64)
    assert sorted(i for group in passes for i in group) == list(range(len(lengths)))
    for group in passes:
        padded = len(group) * max(lengths[i] for i in group)
        assert padded <= 64 or len(group) == 1  # a long text gets a pass of its own
    assert [1, 2, 5] in passes  # the short ones travel together


def test_pad_marks_real_tokens() -> None:
    ids, mask = pad([[101, 7, 102], [101, 102]])
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
