"""Verdicts per sample, and ``docs/parity.md``.

    .venv/bin/python -m tests.parity.report

runs the whole comparison on a control plane of its own (the same code as the
``parity`` tier, about two minutes) and rewrites ``docs/parity.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.paths import REPO
from localcluster import build, controlplane, versions
from localcluster.controlplane import ControlPlane
from tests.parity import run as parity_run
from tests.parity.compare import (
    Allowance,
    Difference,
    allowance_for,
    differences,
    load_allowed,
    object_verdicts,
    short,
)
from tests.parity.samples import Prepared, discover

DOC = REPO / "docs" / "parity.md"


@dataclass
class Outcome:
    """One sample's comparison."""

    prepared: Prepared
    kuberay: dict[str, Any]
    raykube: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)  # operator -> why nothing was applied
    differences: list[Difference] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)

    @property
    def sample(self) -> str:
        return self.prepared.sample.id

    def unlisted(self, allowed: list[Allowance]) -> list[Difference]:
        return [d for d in self.differences if allowance_for(d, allowed) is None]


def outcomes(result: parity_run.ParityRun, allowed: list[Allowance]) -> list[Outcome]:
    out = []
    for p in result.prepared:
        sid = p.sample.id
        kr, rk = result.kuberay.views[sid], result.raykube.views[sid]
        errors = {
            name: phase.errors[sid]
            for name, phase in (("KubeRay", result.kuberay), ("raykube", result.raykube))
            if sid in phase.errors
        }
        diffs = differences(sid, kr, rk)
        out.append(Outcome(p, kr, rk, errors, diffs, object_verdicts(kr, rk, diffs, allowed)))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(results: list[Outcome]) -> list[str]:
    lines = [
        "| sample | objects | identical | allowed-different | different "
        "| fields removed for KubeRay 1.6.2 |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for o in results:
        counts = Counter(o.verdicts.values())
        removed = "<br>".join(_cell(r) for r in o.prepared.removed) or ""
        lines.append(
            f"| `{o.sample}` | {len(o.verdicts)} | {counts['identical']} | "
            f"{counts['allowed-different']} | {counts['different']} | {removed} |"
        )
    return lines


def role(key: str) -> str:
    """An object key without its cluster's name: ``Pod (head)``, ``Service (head)``..."""
    kind, _, name = key.partition("/")
    for suffix, what in (
        ("-head-<random>", "head"),
        ("-worker-<random>", "worker"),
        ("-head-svc", "head"),
    ):
        if suffix in name:
            return f"{kind} ({what})"
    return kind


def _generic(outcome: Outcome, value: Any) -> str:
    """``value`` as the doc shows it, the sample's cluster names read ``<cluster>``
    (so one difference found in many samples is one row)."""
    names = [
        d["metadata"]["name"] + ("-<suffix>" if d["kind"] == "RayService" else "")
        for d in outcome.prepared.ray_documents
    ]
    text = short(value, 160)
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, "<cluster>")
    return _cell(text)


def _unlisted(results: list[Outcome], allowed: list[Allowance]) -> list[str]:
    """One row per object role, field and values, with the number of samples."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    errors = [
        f"- `{o.sample}` not applied ({who}): {_cell(why)[:300]}"
        for o in results
        for who, why in o.errors.items()
    ]
    for o in results:
        for d in o.unlisted(allowed):
            key = (role(d.object), d.path, _generic(o, d.kuberay), _generic(o, d.raykube))
            samples = groups.setdefault(key, [])
            if o.sample not in samples:
                samples.append(o.sample)
    if not groups:
        return errors or ["None."]
    lines = [*errors, "| object | field | KubeRay | raykube | samples |", "|---|---|---|---|---|"]
    for (what, path, kuberay, raykube), samples in groups.items():
        field_ = _cell(path) or "(the object)"
        lines.append(f"| {what} | `{field_}` | `{kuberay}` | `{raykube}` | {len(samples)} |")
    return lines


def _allowances(allowed: list[Allowance]) -> list[str]:
    lines = ["| object | path | samples | reason |", "|---|---|---|---|"]
    for a in allowed:
        lines.append(f"| `{a.object}` | `{a.path}` | `{a.sample}` | {_cell(a.reason)} |")
    return lines


def markdown(result: parity_run.ParityRun, results: list[Outcome], allowed: list[Allowance]) -> str:
    total = Counter(v for o in results for v in o.verdicts.values())
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    parts = [
        "# Parity with KubeRay",
        "",
        "Generated by `.venv/bin/python -m tests.parity.report` (do not edit by hand).",
        "",
        f"The `parity` tier (`tests/parity/`) runs KubeRay's operator {versions.KUBERAY} (built",
        "from the Go module proxy, `python -m localcluster build --kuberay`) and then raykube",
        "against one local control plane with kwok nodes, applies every sample to each, and",
        "compares every child object they create: pods (the whole spec: command, args, env,",
        "ports, probes, volumes and mounts, resources, lifecycle, security context), labels",
        "and annotations, Services, ServiceAccounts, Roles, RoleBindings, Secrets (keys),",
        "ConfigMaps, NetworkPolicies, Ingresses, Jobs and the RayClusters a RayService",
        "creates. What must differ (namespaces, random suffixes, UIDs, allocated IPs, the",
        "operators' own bookkeeping) is normalised first (`tests/parity/normalise.py`).",
        "Every remaining difference is either listed with its reason in",
        "`tests/parity/allowed.yaml`, or the tier fails.",
        "",
        "A sample that KubeRay 1.6.2 refuses (fields of KubeRay 1.7 or of raykube) is",
        "compared, for both operators, with those fields removed (last column).",
        "",
        f"Objects: {sum(total.values())}; identical {total['identical']}, allowed-different "
        f"{total['allowed-different']}, different {total['different']}. Run: {timing}.",
        "",
        "## Per sample",
        "",
        *_table(results),
        "",
        "## Differences not listed in allowed.yaml (the tier fails on each)",
        "",
        "Grouped by object, field and values (the sample's cluster name reads `<cluster>`);",
        "`pytest tests/parity` prints each one per sample.",
        "",
        *_unlisted(results, allowed),
        "",
        "## Allowed differences (`tests/parity/allowed.yaml`)",
        "",
        *_allowances(allowed),
        "",
    ]
    return "\n".join(parts)


def _fresh_plane(state: Path) -> ControlPlane:
    build.build_kuberay()
    return controlplane.up(state, quiet=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.parity.report", description=__doc__)
    parser.add_argument("--out", type=Path, default=DOC, help=f"where to write (default {DOC})")
    args = parser.parse_args(argv)
    state = versions.cache_root() / "clusters" / f"parity-report-{os.getpid()}"
    began = time.monotonic()
    try:
        cp = _fresh_plane(state)
        allowed = load_allowed()
        result = parity_run.run(cp, parity_run.prepare_all(discover()), state / "logs")
    finally:
        controlplane.down(state)
    shutil.rmtree(state, ignore_errors=True)
    result.seconds["total"] = time.monotonic() - began
    results = outcomes(result, allowed)
    args.out.write_text(markdown(result, results, allowed))
    unlisted = sum(len(o.unlisted(allowed)) + len(o.errors) for o in results)
    print(f"wrote {args.out}: {unlisted} unlisted differences", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
