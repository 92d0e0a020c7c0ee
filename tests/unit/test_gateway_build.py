"""The throwaway module that builds Traefik from the Go module proxy (pure)."""

from __future__ import annotations

import re

import pytest

from localcluster import build, versions

TRAEFIK_GOMOD = """module github.com/traefik/traefik/v3

go 1.25.0

require (
\tgithub.com/abbot/go-http-auth v0.0.0-00010101000000-000000000000
\tsigs.k8s.io/gateway-api v1.4.0
)

replace github.com/one/off => github.com/one/fork v1.2.3 // a comment

replace (
\tgithub.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1
\tgithub.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59
)
"""


def test_traefik_gomod_requires_the_release_and_repeats_its_replaces() -> None:
    text = build.traefik_gomod(TRAEFIK_GOMOD)
    lines = text.splitlines()
    assert lines[0] == "module raykube.local/traefikbuild"
    assert "go 1.25.0" in lines
    assert f"require {versions.TRAEFIK_MODULE} {versions.TRAEFIK}" in lines
    assert "\tgithub.com/one/off => github.com/one/fork v1.2.3" in lines
    assert "\tgithub.com/abbot/go-http-auth => github.com/containous/go-http-auth v0.4.1" in lines
    assert sum("=>" in line for line in lines) == 3


def test_a_replace_by_a_directory_is_refused_with_its_line() -> None:
    local = TRAEFIK_GOMOD + "replace github.com/traefik/traefik/dynamic/ext => ./pkg/ext\n"
    with pytest.raises(ValueError, match=re.escape("dynamic/ext => ./pkg/ext")):
        build.traefik_gomod(local)
