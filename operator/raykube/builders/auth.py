"""Ray's token authentication, ``authOptions.mode: token`` (pure).

Ray (>= 2.52) turns it on per process from two environment variables: every
Ray container of the cluster and the autoscaler sidecar (which calls the GCS)
get ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` read from a Secret's
``auth_token`` key, as KubeRay 1.6 sets them; a variable the user already set
is left as written. The Secret is the user's (``secretName``) or one the
operator generates once per cluster, named and labelled as KubeRay names it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raykube.builders import labels, owners
from raykube.models.clusterspec import AuthMode, AuthOptions
from raykube.models.raycluster import RayCluster

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
#: Random bytes in a generated token (KubeRay's size; sent base64-encoded).
TOKEN_BYTES = 32


@dataclass(frozen=True)
class TokenSecret:
    """Where a token-mode cluster's pods read their token."""

    name: str
    #: True: the operator's Secret, owned by the cluster; False: the user's.
    generated: bool


def token_secret(cluster_name: str, options: AuthOptions | None) -> TokenSecret | None:
    """The token Secret of a cluster with these ``authOptions``; None without
    token authentication. An omitted mode is token, the API's documented
    default (KubeRay 1.6.2 itself then runs without authentication)."""
    if options is None or options.mode == AuthMode.DISABLED:
        return None
    if options.secret_name:
        return TokenSecret(options.secret_name, generated=False)
    return TokenSecret(labels.auth_secret_name(cluster_name), generated=True)


def token_secret_of(cluster: RayCluster) -> TokenSecret | None:
    return token_secret(cluster.metadata.name, cluster.spec.auth_options)


def auth_env(secret: TokenSecret) -> list[dict[str, Any]]:
    return [
        {"name": AUTH_MODE_ENV, "value": "token"},
        {
            "name": AUTH_TOKEN_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": labels.AUTH_TOKEN_KEY}},
        },
    ]


def add_auth_env(container: dict[str, Any], secret: TokenSecret | None) -> None:
    """Append the token variables ``container`` does not set itself."""
    if secret is None:
        return
    env = container.get("env") or []
    if not isinstance(env, list):
        return  # a shape the API server refuses anyway (the dry run reports it)
    present = {e.get("name") for e in env if isinstance(e, Mapping)}
    container["env"] = env + [e for e in auth_env(secret) if e["name"] not in present]


def new_token() -> str:
    """A fresh random token: generated only when its Secret is created."""
    return base64.b64encode(secrets.token_bytes(TOKEN_BYTES)).decode()


def build_auth_secret(cluster: RayCluster, secret: TokenSecret, token: str) -> dict[str, Any]:
    """The Secret the operator creates for a token-mode cluster without
    ``secretName`` (``secret.generated``). Created once, never rewritten:
    running Ray processes hold the token it had when they started."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret.name,
            "namespace": cluster.metadata.namespace,
            "labels": {labels.CLUSTER: cluster.metadata.name},
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "type": "Opaque",
        "data": {labels.AUTH_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }
