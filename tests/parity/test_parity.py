"""raykube's children against KubeRay's, sample by sample (``docs/parity.md``).

Each difference the normalisation leaves (``normalise.py``) is either listed
with its reason in ``allowed.yaml`` or fails here, named by object, field and
both values. ``python -m tests.parity.report`` writes the same comparison to
``docs/parity.md``.
"""

from __future__ import annotations

import pytest

from tests.parity.compare import load_allowed
from tests.parity.report import Outcome
from tests.parity.run import ParityRun
from tests.parity.samples import Sample, discover

pytestmark = pytest.mark.parity

# Read at collection: missing shared manifests fail the collection, never skip.
SAMPLES = discover()
Run = tuple[ParityRun, dict[str, Outcome]]


def test_allowed_file_is_well_formed() -> None:
    assert load_allowed(), "allowed.yaml lists nothing: is it the right file?"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_kuberay_builds_the_sample(parity: Run, sample: Sample) -> None:
    """The oracle really ran: KubeRay accepted the sample and created children."""
    outcome = parity[1][sample.id]
    assert "KubeRay" not in outcome.errors, outcome.errors["KubeRay"]
    assert outcome.kuberay, f"KubeRay created nothing for {sample.id}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_raykube_accepts_the_sample(parity: Run, sample: Sample) -> None:
    outcome = parity[1][sample.id]
    assert "raykube" not in outcome.errors, outcome.errors["raykube"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_no_unlisted_difference(parity: Run, sample: Sample) -> None:
    unlisted = parity[1][sample.id].unlisted(load_allowed())
    assert not unlisted, (
        f"{len(unlisted)} differences from KubeRay not in allowed.yaml:\n"
        + "\n".join("  " + d.text() for d in unlisted)
    )


def test_both_operators_settled(parity: Run) -> None:
    """Children compared while an operator still created them would differ by chance."""
    result = parity[0]
    assert result.kuberay.settled, "KubeRay's children kept changing"
    assert result.raykube.settled, "raykube's children kept changing"


def test_every_allowance_is_used(parity: Run) -> None:
    """An allowance that matches nothing is stale (the difference was fixed or
    moved): it must go, or it would hide the next difference at that place."""
    diffs = [d for o in parity[1].values() for d in o.differences]
    unused = [a for a in load_allowed() if not any(a.matches(d) for d in diffs)]
    assert not unused, "allowed.yaml entries that match no difference:\n" + "\n".join(
        f"  {a.object} {a.path} ({a.sample}; kuberay={a.kuberay!r} raykube={a.raykube!r})"
        for a in unused
    )
