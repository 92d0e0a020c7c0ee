"""Ray Serve on this machine: latency, batching and autoscaling figures.

    .venv/bin/python bench/serve_bench.py            # full run, ~3-4 minutes
    .venv/bin/python bench/serve_bench.py --quick    # smaller counts, ~2 minutes

Starts its own Ray head on loopback (free ports, stopped by PID at the end),
deploys through the dashboard's REST API as the operator does, and measures:

1. the walkthrough's fruit app over HTTP (`POST /fruit/ ["MANGO", 2]`):
   p50/p99 latency and requests/s at concurrency 1 and 8;
2. the embedding service under the same load with `@serve.batch` on
   (max_batch_size 16) and off (max_batch_size 1);
3. `num_replicas: auto`: replica count over time while the load rises from 1
   to 24 concurrent clients and then stops.

Prints a summary and writes everything to bench/results/serve_bench-<time>.json
(and bench/results/serve_bench.json, the latest). All traffic is loopback; every
loop is bounded in requests and seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Run as a script (``python bench/serve_bench.py``): the repository root gives
# ``bench`` and ``e2e`` as packages, serve_runtime the Ray side.
sys.path.insert(0, str(REPO / "serve_runtime"))
sys.path.insert(0, str(REPO))

from bench.loadgen import LoadResult, Send, run_load  # noqa: E402
from e2e.paths import manifest  # noqa: E402
from raykube_serve import dashboard  # noqa: E402
from raykube_serve.embeddings import sample_config  # noqa: E402
from raykube_serve.localhead import LocalRayHead  # noqa: E402
from raykube_serve.version import RAY_VERSION  # noqa: E402

_PASSAGE = (
    "ray serve routes each request through the proxy to a replica where the model "
    "encodes text into a vector that a search index stores next to millions of others "
    "so that similar passages can be found quickly when a user asks a question about "
    "kubernetes operators autoscaling batching and load shedding under heavy traffic"
)
_WORDS = _PASSAGE.split()
# Search queries (8-20 tokens): what an embedding service sees per user request.
TEXTS = [f"query {i}: " + " ".join(_WORDS[(i * 5) % 40 :][: 4 + i % 9]) for i in range(64)]
# Passages (40-70 tokens), as an indexer sends them; timed on the model alone.
PASSAGES = [
    f"passage {i}: " + " ".join(_WORDS[(i * 7) % 20 : (i * 7) % 20 + 30 + (i % 4) * 10])
    for i in range(16)
]


def embeddings_app(**deployment: Any) -> dict[str, Any]:
    """The embedding app; fixed at one replica unless overridden."""
    spec = {"name": "Embedder", "num_replicas": 1, "max_ongoing_requests": 32}
    spec.update(deployment)
    return {
        "name": "embeddings",
        "import_path": "raykube_serve.embeddings:app",
        "route_prefix": "/embed",
        "deployments": [spec],
    }


def full_config(head: LocalRayHead, embeddings: dict[str, Any]) -> dict[str, Any]:
    config = dashboard.serve_config_from_manifest(
        manifest("ray_v1alpha1_rayservice.yaml").read_text()
    )
    config["applications"].append(embeddings)
    return dashboard.on_loopback(config, head.ports.serve_http)


def deploy(head: LocalRayHead, config: dict[str, Any]) -> None:
    dashboard.put_applications(head.dashboard_url, config)
    names = [app["name"] for app in config["applications"]]
    dashboard.wait_running(head.dashboard_url, names, timeout_s=300)


async def post_fruit(client: httpx.AsyncClient, seq: int) -> httpx.Response:
    return await client.post("/fruit/", json=["MANGO", 2])


async def post_text(client: httpx.AsyncClient, seq: int) -> httpx.Response:
    return await client.post("/embed/", json={"text": TEXTS[seq % len(TEXTS)]})


async def bench_fruit(head: LocalRayHead, scale: float) -> dict[str, Any]:
    await run_load(head.serve_url, post_fruit, 4, 40, 60)  # warm-up, not reported
    results = {}
    for concurrency, total in ((1, int(400 * scale)), (8, int(1200 * scale))):
        result = await run_load(head.serve_url, post_fruit, concurrency, total, 90)
        results[f"concurrency_{concurrency}"] = result.summary()
    return results


def mean_batch(result: LoadResult) -> float:
    sizes = [size for body in result.bodies for size in body["batch_sizes"]]
    return round(sum(sizes) / len(sizes), 2) if sizes else 0.0


async def wait_for_batch_limit(head: LocalRayHead, limit: int) -> None:
    # The PUT answers before reconfigure() runs in the replica.
    for _ in range(60):
        probe = await run_load(head.serve_url, post_text, 8, 16, 30, keep_bodies=True)
        sizes = [s for body in probe.bodies for s in body["batch_sizes"]]
        if sizes and max(sizes) <= limit:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"max_batch_size={limit} never took effect")


async def post_texts(client: httpx.AsyncClient, seq: int) -> httpx.Response:
    start = (seq * 8) % len(TEXTS)
    return await client.post("/embed/", json={"texts": TEXTS[start : start + 8]})


# Two shapes of the same work: many one-text requests (HTTP and the proxy
# cost as much as the model) and fewer eight-text requests (the model
# dominates). Each runs with batching off and on.
LOAD_SHAPES: dict[str, tuple[Send, int, int, int]] = {
    # name: (send, concurrency, requests, texts per request)
    "one_text_per_request": (post_text, 16, 480, 1),
    "eight_texts_per_request": (post_texts, 4, 60, 8),
}


async def bench_batching(head: LocalRayHead, scale: float) -> dict[str, Any]:
    results: dict[str, Any] = {name: {} for name in LOAD_SHAPES}
    for label, size in (("without_batching", 1), ("with_batching", 16)):
        user_config = {"max_batch_size": size, "batch_wait_timeout_s": 0.01}
        deploy(head, full_config(head, embeddings_app(user_config=user_config)))
        await wait_for_batch_limit(head, size)
        for name, (send, concurrency, requests, per_request) in LOAD_SHAPES.items():
            total = max(concurrency * 4, int(requests * scale))
            await run_load(head.serve_url, send, concurrency, concurrency * 2, 60)  # warm-up
            result = await run_load(head.serve_url, send, concurrency, total, 120, True)
            summary = result.summary()
            summary["user_config"] = user_config
            summary["texts_per_request"] = per_request
            summary["mean_batch_size"] = mean_batch(result)
            summary["texts_per_s"] = round(summary["requests_per_s"] * per_request, 2)
            results[name][label] = summary
    for shape in results.values():
        off, on = shape["without_batching"], shape["with_batching"]
        shape["speedup"] = round(on["texts_per_s"] / off["texts_per_s"], 2) if off["ok"] else None
    return results


MODEL_ONLY = """
import json, sys, time
from raykube_serve.model import SentenceEncoder
encoder = SentenceEncoder.load()
out = {}
for name, texts in json.loads(sys.argv[1]).items():
    for label, calls in (("one_by_one", [[t] for t in texts]), ("batched", [texts])):
        for call in calls[:2]:
            encoder.encode(call)  # warm-up
        # CPU time, not wall time: the process has one BLAS thread, and CPU
        # time does not count the time other work on the machine takes.
        start = time.process_time()
        for _ in range(3):
            for call in calls:
                encoder.encode(call)
        per_text = (time.process_time() - start) / 3 / len(texts)
        out[f"{name}_{label}_cpu_ms_per_text"] = round(per_text * 1e3, 2)
print(json.dumps(out))
"""


def bench_model_only() -> dict[str, Any]:
    """The numpy encoder alone, one BLAS thread (as in a num_cpus=1 replica)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO / "serve_runtime")
    texts = json.dumps({"queries": TEXTS[:16], "passages": PASSAGES})
    done = subprocess.run(
        [sys.executable, "-c", MODEL_ONLY, texts],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


AUTOSCALING_OVERRIDES: dict[str, Any] = {
    # Shorter delays and look-back than the sample config so a bounded run
    # shows both directions; the policy is the same.
    "min_replicas": 1,
    "max_replicas": 3,
    "target_ongoing_requests": 4,
    "upscale_delay_s": 3,
    "downscale_delay_s": 15,
    # Long enough that a metrics report delayed by a busy 2-core machine does
    # not read as "no load" and scale down in the middle of the load.
    "look_back_period_s": 10,
    "metrics_interval_s": 2,
}
PHASES = [("low", 1, 10.0), ("high", 24, 45.0), ("idle", 0, 30.0)]


def autoscaling_app() -> dict[str, Any]:
    app = copy.deepcopy(sample_config()["applications"][0])
    deployment = app["deployments"][0]
    deployment["autoscaling_config"].update(AUTOSCALING_OVERRIDES)
    deployment["max_ongoing_requests"] = 16
    deployment["user_config"] = {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}
    return dict(app)


async def sample_replicas(
    head: LocalRayHead,
    start: float,
    phase: list[str],
    out: list[dict[str, Any]],
    stop: asyncio.Event,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        while not stop.is_set():
            try:
                response = await client.get(
                    head.dashboard_url + dashboard.APPS_PATH, params={"api_type": "declarative"}
                )
                embedder = response.json()["applications"]["embeddings"]["deployments"]["Embedder"]
                running = sum(1 for r in embedder["replicas"] if r["state"] == "RUNNING")
                out.append(
                    {
                        "t_s": round(time.monotonic() - start, 1),
                        "phase": phase[0],
                        "target_replicas": embedder["target_num_replicas"],
                        "running_replicas": running,
                    }
                )
            except (httpx.HTTPError, KeyError):
                pass  # a missed sample is fine; the next one comes in a second
            await asyncio.sleep(1.0)


async def bench_autoscaling(head: LocalRayHead) -> dict[str, Any]:
    app = autoscaling_app()
    deploy(head, full_config(head, app))
    timeline: list[dict[str, Any]] = []
    phase = ["start"]
    stop = asyncio.Event()
    start = time.monotonic()
    sampler = asyncio.create_task(sample_replicas(head, start, phase, timeline, stop))
    phases = {}
    for name, concurrency, seconds in PHASES:
        phase[0] = name
        if concurrency:
            result = await run_load(head.serve_url, post_text, concurrency, 100_000, seconds)
            phases[name] = result.summary()
        else:
            await asyncio.sleep(seconds)
            phases[name] = {"concurrency": 0, "elapsed_s": seconds}
    stop.set()
    await sampler
    return {
        "deployment": app["deployments"][0],
        "phases": phases,
        "timeline": timeline,
        "max_running_replicas": max((s["running_replicas"] for s in timeline), default=0),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "ray": RAY_VERSION,
        "platform": platform.platform(),
    }


async def run_all(head: LocalRayHead, scale: float) -> dict[str, Any]:
    return {
        "embedding_model_only": bench_model_only(),
        "fruit": await bench_fruit(head, scale),
        "embeddings_batching": await bench_batching(head, scale),
        "autoscaling": await bench_autoscaling(head),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests per phase")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
    }
    env = {"PYTHONPATH": str(REPO / "serve_runtime")}
    with LocalRayHead(num_cpus=6, object_store_mb=100, env=env) as head:
        started = time.monotonic()
        deploy(head, full_config(head, embeddings_app()))
        report["first_deploy_s"] = round(time.monotonic() - started, 1)
        report.update(asyncio.run(run_all(head, 0.4 if args.quick else 1.0)))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    (args.out / f"serve_bench-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text)
    (args.out / "serve_bench.json").write_text(text)
    print_summary(report)


def print_summary(report: dict[str, Any]) -> None:
    print(f"machine: {report['machine']}")
    print(f"first deploy of 3 apps: {report['first_deploy_s']} s")
    for key, summary in report["fruit"].items():
        print(f"fruit {key}: {summary}")
    print(f"embedding model alone (numpy, 1 thread, 16 texts): {report['embedding_model_only']}")
    for shape, runs in report["embeddings_batching"].items():
        for key in ("without_batching", "with_batching"):
            print(f"embeddings {shape} {key}: {runs[key]}")
        print(f"embeddings {shape}: batching speedup {runs['speedup']}x")
    scaling = report["autoscaling"]
    print(f"autoscaling phases: {scaling['phases']}")
    print("replicas over time (t_s phase target running):")
    for sample in scaling["timeline"]:
        print(
            f"  {sample['t_s']:6.1f} {sample['phase']:>5} "
            f"{sample['target_replicas']} {sample['running_replicas']}"
        )


if __name__ == "__main__":
    main()
