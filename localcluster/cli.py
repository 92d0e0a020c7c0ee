"""Command line for people: ``python -m localcluster build|up|down|status|kubeconfig``."""

from __future__ import annotations

import argparse
from pathlib import Path

from localcluster import build, compose, controlplane, images, kwok, node

REPO = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="A real Kubernetes control plane (built from source) on 127.0.0.1.",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        help=f"state directory (default {controlplane.default_state()})",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    build_cmd = sub.add_parser(
        "build", help="build the pinned Kubernetes binaries (cached; no-op when present)"
    )
    build_cmd.add_argument(
        "--kuberay",
        action="store_true",
        help="also build KubeRay's operator and CRDs (the parity tier's oracle)",
    )
    build_cmd.add_argument(
        "--gateway",
        action="store_true",
        help="also build Traefik and take the Gateway API CRDs (RayServices with a Gateway)",
    )
    up = sub.add_parser(
        "up", help="start etcd, kube-apiserver, controllers, kwok nodes; install CRDs"
    )
    up.add_argument("--cpu-nodes", type=int, default=3)
    up.add_argument("--gpu-nodes", type=int, default=2)
    up.add_argument("--crds", type=Path, default=REPO / "crds")
    up.add_argument(
        "--node", action="store_true", help="also start a real node (kubelet, containerd, CNI)"
    )
    sub.add_parser("down", help="stop everything `up` started, by PID")
    sub.add_parser("status", help="show which components run")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    node.add_parsers(sub)
    images.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state = args.state or controlplane.default_state()
    if args.cmd == "build":
        print(build.build_all())
        if args.kuberay:
            print(build.build_kuberay())
        if args.gateway:
            print(build.build_gateway())
    elif args.cmd == "up":
        plan = kwok.NodePlan(cpu_nodes=args.cpu_nodes, gpu_nodes=args.gpu_nodes)
        cp = compose.up(state, crds=args.crds, nodes=plan, real_node=args.node)
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"kubectl: {cp.bin / 'kubectl'}")
    elif args.cmd == "down":
        stopped = compose.down(state)
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    elif args.cmd == "status":
        running = controlplane.status(state)
        if not running:
            print("not running")
            return 1
        memory = controlplane.memory_mib(state)
        for name, ok in running.items():
            rss, peak = memory.get(name, (0.0, 0.0))
            state_word = "running" if ok else "DEAD"
            print(f"{name:26} {state_word:8} rss {rss:7.1f} MiB  peak {peak:7.1f} MiB")
        total = sum(m[0] for m in memory.values()), sum(m[1] for m in memory.values())
        print(f"{'total':26} {'':8} rss {total[0]:7.1f} MiB  peak {total[1]:7.1f} MiB")
        return 0 if all(running.values()) else 1
    elif args.cmd == "kubeconfig":
        print(state / "admin.kubeconfig")
    elif args.cmd.startswith("node-"):
        return node.run_cli(args.cmd, state, getattr(args, "attach", False))
    elif args.cmd == "image":
        return images.run_cli(args, args.state)
    return 0
