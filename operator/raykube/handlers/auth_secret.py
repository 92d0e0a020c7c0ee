"""The token Secret the operator generates for a RayCluster in token mode.

Created once, when absent, holding a fresh random token; never rewritten, so
the token running Ray processes hold stays valid. Secrets are not watched:
each cluster's Secret is looked at once per process.
"""

from __future__ import annotations

from typing import Any

from raykube.adapters.kube import ApiError
from raykube.builders import auth
from raykube.handlers.children import ensure_owned
from raykube.handlers.kit import Controller
from raykube.handlers.workqueue import Key
from raykube.models.raycluster import RayCluster

FAILED = "FailedCreateAuthSecret"
#: The ``ObjectState.applied`` entry: the name of the Secret known to be ours.
APPLIED = "auth-secret"


async def ensure_auth_secret(
    ctl: Controller, key: Key, obj: dict[str, Any], cluster: RayCluster
) -> tuple[str, str] | None:
    """Why no pod may be created yet, if the cluster's generated token Secret
    cannot be had: pods naming a Secret that is missing, or someone else's,
    would wait for ever or run with a token nobody gave this cluster."""
    secret = auth.token_secret_of(cluster)
    if secret is None or not secret.generated:
        return None
    record = ctl.seen(key)
    if record.applied.get(APPLIED) == secret.name:
        return None
    desired = auth.build_auth_secret(cluster, secret, auth.new_token())
    what = f"Secret {key[0]}/{secret.name}"
    try:
        written = await ensure_owned(ctl, key, obj, desired, update=False)
    except ApiError as err:
        if not err.forbidden:
            raise
        failure = (
            FAILED,
            f"{what} for the cluster's Ray token was not created: the operator may not "
            f"write Secrets (chart value features.rayServiceAuthSecrets); name a Secret "
            f"in authOptions.secretName instead ({err.message})",
        )
        ctl.warn_once(key, obj, *failure)
        return failure
    if written is None:
        return (
            FAILED,
            f"{what} exists and is not controlled by this RayCluster; no pod is created "
            "until it is removed (or authOptions.secretName names the Secret to use)",
        )
    record.applied[APPLIED] = secret.name
    return None
