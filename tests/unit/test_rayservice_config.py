"""Table tests: serveConfigV2 parsing and Ray Serve's schema, checked before submission."""

from __future__ import annotations

import pytest

from raykube.builders.hashing import digest as config_hash
from raykube.decisions.rayservice_config import parse_serve_config

GOOD = """
applications:
  - name: fruit_app
    import_path: fruit.deployment_graph
    route_prefix: /fruit
    runtime_env:
      working_dir: "https://example.com/test_dag.zip"
    deployments:
      - name: MangoStand
        num_replicas: 1
        user_config: {price: 3}
        ray_actor_options: {num_cpus: 0.1}
  - name: math_app
    import_path: conditional_dag:serve_dag
    route_prefix: /calc
"""


def test_walkthrough_config_is_accepted_with_app_names() -> None:
    goal = parse_serve_config(GOOD)
    assert goal.valid, goal.error
    assert goal.app_names == ("fruit_app", "math_app")
    assert goal.config["applications"][0]["deployments"][0]["user_config"] == {"price": 3}


def test_hash_ignores_formatting_and_key_order_but_not_values() -> None:
    reordered = GOOD.replace(
        "num_replicas: 1\n        user_config: {price: 3}",
        "user_config: {price: 3}\n        num_replicas: 1",
    )
    assert parse_serve_config(reordered).hash == parse_serve_config(GOOD).hash
    assert (
        parse_serve_config(GOOD.replace("price: 3", "price: 4")).hash
        != parse_serve_config(GOOD).hash
    )
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_unset_config_leaves_serve_alone() -> None:
    for text in (None, "", "   \n"):
        goal = parse_serve_config(text)
        assert goal.valid and goal.hash == "" and goal.app_names == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("applications: [\n  - name: a\n", "not valid YAML (line"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("http_options: {port: 8000}\n", "applications: required"),
        ("applications: {name: a}\n", "applications: must be a list"),
        ("applications:\n  - name: a\n", "applications[0].import_path: must be a non-empty"),
        ("applications:\n  - import_path: nodots\n", '"nodots" is not of the form'),
        ("applications:\n  - import_path: a:b:c\n", "not of the form"),
        (
            "applications:\n  - import_path: m.app\n    route_prefix: fruit\n",
            'applications[0].route_prefix: must start with "/"',
        ),
        (
            "applications:\n  - import_path: m.app\n    runtime_env: {working_dir: ./dir}\n",
            "applications[0].runtime_env.working_dir: must be a URI",
        ),
        (
            "applications:\n  - import_path: m.app\n    port: 9000\n",
            "applications[0].port: not allowed here, set http_options.port",
        ),
        (
            "applications:\n  - import_path: m.app\n    deployments:\n      - num_replicas: 1\n",
            "applications[0].deployments[0].name: required",
        ),
        (
            "applications:\n  - import_path: m.app\n    deployments:\n"
            "      - {name: D, num_replicas: -1}\n",
            "applications[0].deployments[0].num_replicas: must be an integer > 0",
        ),
        (
            "applications:\n  - import_path: m.app\n    deployments:\n"
            "      - {name: D, num_replicas: 2, autoscaling_config: {max_replicas: 3}}\n",
            "num_replicas: cannot be set together with autoscaling_config",
        ),
        (
            "applications:\n  - import_path: m.app\n    deployments:\n"
            "      - {name: D, user_config: [1, 2]}\n",
            "deployments[0].user_config: must be a mapping",
        ),
        (
            "applications:\n  - import_path: m.app\n    deployments:\n"
            "      - {name: D, ray_actor_options: {num_cpus: lots}}\n",
            "ray_actor_options.num_cpus: must be a number >= 0",
        ),
        (
            "applications:\n  - {name: a, import_path: m.app}\n  - {name: a, import_path: m.b, "
            "route_prefix: /b}\n",
            'name "a" is used more than once',
        ),
        (
            "applications:\n  - {name: a, import_path: m.app}\n  - {name: b, import_path: m.b}\n",
            'route_prefix "/" is used more than once',
        ),
        ("proxy_location: Everywhere\napplications: []\n", "proxy_location: must be one of"),
        ("http_options: {port: 99999}\napplications: []\n", "http_options.port: must be a port"),
        (
            "logging_config: {colour: true}\napplications: []\n",
            "logging_config.colour: unknown key",
        ),
        ("target_capacity: 150\napplications: []\n", "target_capacity: must be a number"),
    ],
)
def test_bad_configs_name_the_offending_key(text: str, expected: str) -> None:
    goal = parse_serve_config(text)
    assert not goal.valid
    assert expected in goal.error
    assert goal.hash == "" and not goal.config


def test_unknown_keys_pass_through_as_ray_ignores_them() -> None:
    goal = parse_serve_config("applications:\n  - import_path: m.app\n    future_option: 1\n")
    assert goal.valid, goal.error


def test_null_route_prefix_means_no_http_route_and_is_not_a_duplicate() -> None:
    text = (
        "applications:\n  - {name: a, import_path: m.a, route_prefix: null}\n"
        "  - {name: b, import_path: m.b, route_prefix: null}\n"
    )
    assert parse_serve_config(text).valid
