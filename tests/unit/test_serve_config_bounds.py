"""serveConfigV2 reaches only bounded parsing: anchors, aliases, deep nesting, oversized
text and YAML values JSON cannot carry are refused with a message saying where."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from raykube.decisions import rayservice_config
from raykube.decisions.rayservice_config import parse_serve_config


def with_user_config(user_config: str) -> str:
    return (
        "applications:\n"
        "  - name: app\n"
        "    import_path: mod.attr\n"
        "    deployments:\n"
        "      - name: D\n"
        f"        user_config: {user_config}\n"
    )


def alias_bomb(levels: int) -> str:
    """Each level names the previous one nine times: 9**levels leaves from a few lines."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    body = "\n".join(lines)
    return f"bomb:\n  {body.replace(chr(10), chr(10) + '  ')}\n" + with_user_config(
        f"{{v: *a{levels}}}"
    )


def test_the_alias_bomb_is_refused_fast_and_small() -> None:
    text = alias_bomb(6)  # 9**7 leaves; the reported 539-byte bomb has the same shape
    tracemalloc.start()
    start = time.perf_counter()
    goal = parse_serve_config(text)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not goal.valid
    assert "anchor" in goal.error and "line 2" in goal.error
    assert elapsed < 1.0  # unbounded, this took 18 s at nine levels
    assert peak < 5_000_000


@pytest.mark.parametrize(
    "text",
    [
        with_user_config("&price {a: 1}"),  # an anchor, even unused
        "x: &a {k: 1}\ny: *a\n" + with_user_config("{}"),
        "&r [*r]",  # a recursive document
    ],
)
def test_any_anchor_or_alias_is_refused(text: str) -> None:
    goal = parse_serve_config(text)
    assert not goal.valid
    assert "anchors and aliases" in goal.error


def test_oversized_text_is_refused_before_parsing() -> None:
    text = with_user_config("{}") + "#" * rayservice_config.MAX_SERVE_CONFIG_CHARS
    goal = parse_serve_config(text)
    assert not goal.valid
    assert f"longer than {rayservice_config.MAX_SERVE_CONFIG_CHARS}" in goal.error


@pytest.mark.parametrize("flow", [True, False])
def test_deep_nesting_is_refused(flow: bool) -> None:
    depth = rayservice_config.MAX_NESTING + 1
    if flow:
        nested = "[" * depth + "]" * depth
    else:
        nested = "".join(f"\n{'  ' * (i + 5)}k{i}:" for i in range(depth)) + " 1"
    goal = parse_serve_config(with_user_config(nested))
    assert not goal.valid
    assert f"nested deeper than {rayservice_config.MAX_NESTING}" in goal.error


def test_very_deep_nesting_is_refused_without_recursion_error() -> None:
    goal = parse_serve_config("[" * 50_000 + "]" * 50_000)
    assert not goal.valid
    # libyaml stops at its own limit (1000) before ours sees the events.
    assert "nest" in goal.error


def test_nesting_up_to_the_limit_is_accepted() -> None:
    # applications / [0] / deployments / [0] / user_config: five levels already.
    depth = rayservice_config.MAX_NESTING - 6
    goal = parse_serve_config(with_user_config("{v: " + "[" * depth + "]" * depth + "}"))
    assert goal.valid, goal.error


@pytest.mark.parametrize(
    ("user_config", "expected"),
    [
        ("{start: 2024-01-01}", "user_config.start: a YAML date/time"),
        ("{at: 2024-01-01T10:00:00Z}", "user_config.at: a YAML date/time"),
        ("{bad: 2024-02-30}", "not valid YAML"),
        ("!!set {a, b}", "user_config: a YAML set"),
        ("{blob: !!binary aGVsbG8=}", "user_config.blob: YAML binary"),
        ("{x: .nan}", "user_config.x: NaN and infinite numbers"),
        ("{x: -.inf}", "user_config.x: NaN and infinite numbers"),
        ("{x: 1.0e+999}", "user_config.x: NaN and infinite numbers"),
        ("{1: a, b: c}", "user_config: key 1 is not a string"),
        ("{on: true}", "user_config: key True is not a string"),
        ("{null: 1}", "user_config: key None is not a string"),
        ("{n: " + "9" * 30 + "}", "user_config.n: integers must fit in 64 bits"),
        ("{n: " + "9" * 5000 + "}", "integers must fit in 64 bits"),
        ("{p: !!omap [a: 1]}", "user_config.p[0]: a YAML pair"),
        ("{p: !!python/name:os.system}", "not valid YAML"),
    ],
)
def test_values_json_cannot_carry_are_refused_naming_where(user_config: str, expected: str) -> None:
    goal = parse_serve_config(with_user_config(user_config))
    assert not goal.valid
    assert expected in goal.error


def test_refusal_names_the_path_in_the_config() -> None:
    goal = parse_serve_config(with_user_config("{when: 2024-01-01}"))
    assert goal.error.startswith(
        "serveConfigV2 holds a value JSON cannot carry: "
        "applications[0].deployments[0].user_config.when"
    )


def test_plain_json_values_are_still_accepted() -> None:
    goal = parse_serve_config(
        with_user_config('{a: 1, b: -2.5, c: "2024-01-01", d: [true, null], e: "x"}')
    )
    assert goal.valid, goal.error
