"""The `ray start` command line and resources, as KubeRay renders them."""

from __future__ import annotations

import pytest

from raykube.builders import probes, quantities
from raykube.builders.ray_start import container_shell, ray_start_command, resource_params

HEAD_SVC = "rc-head-svc.ns.svc.cluster.local"
GCS = f"{HEAD_SVC}:6379"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("500m", 1),
        ("2.5", 3),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        ("1e3", 1000),
        ("128Mi", 2**27),
    ],
)
def test_quantities_round_up_like_kubernetes(text: str, value: int) -> None:
    assert quantities.ceil_int(text) == value


def test_malformed_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        quantities.parse("lots")


def test_head_command_defaults_and_resources_from_limits() -> None:
    container = {"resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "1"}}}
    cmd = ray_start_command("head", {}, container, GCS)
    assert cmd == (
        "ray start --head --block --dashboard-agent-listen-port=52365 --dashboard-host=0.0.0.0"
        f" --memory={4 * 2**30} --metrics-export-port=8080 --num-cpus=2"
    )


def test_cpu_falls_back_to_request_and_gpu_from_any_gpu_limit() -> None:
    container = {
        "resources": {
            "requests": {"cpu": "3", "memory": "1Gi"},
            "limits": {"nvidia.com/gpu": "2", "memory": "2Gi"},
        }
    }
    assert resource_params(container) == {
        "num-cpus": "3",
        "memory": str(2 * 2**30),
        "num-gpus": "2",
    }


def test_mig_slices_count_as_gpus() -> None:
    container = {"resources": {"limits": {"nvidia.com/mig-1g.5gb": "1", "amd.com/gpu": "1"}}}
    assert resource_params(container)["num-gpus"] == "2"


def test_user_params_win_and_true_becomes_a_bare_flag() -> None:
    container = {"resources": {"limits": {"cpu": "4"}}}
    params = {"num-cpus": "0", "disable-usage-stats": "true", "object-store-memory": "100000000"}
    cmd = ray_start_command("worker", params, container, GCS)
    assert cmd == (
        f"ray start --address={HEAD_SVC}:6379 --block --dashboard-agent-listen-port=52365"
        " --disable-usage-stats --metrics-export-port=8080 --num-cpus=0"
        " --object-store-memory=100000000"
    )


def test_worker_joins_at_the_address_it_is_given_and_keeps_its_own_port_flag() -> None:
    """The GCS port is the head's (``pods.head_gcs_address``); a worker's own
    ``port`` param is a flag like any other, as in KubeRay."""
    cmd = ray_start_command("worker", {"port": "6390"}, {}, f"{HEAD_SVC}:6380")
    assert cmd.startswith(f"ray start --address={HEAD_SVC}:6380 ")
    assert "--port=6390" in cmd


def test_a_workers_own_address_wins() -> None:
    cmd = ray_start_command("worker", {"address": "elsewhere:6379"}, {}, GCS)
    assert cmd.startswith("ray start --address=elsewhere:6379 ")
    assert HEAD_SVC not in cmd


@pytest.mark.parametrize("value", ["false", "False", "FALSE"])
def test_false_leaves_the_flag_out(value: str) -> None:
    """KubeRay omits a switch that is off; ``--disable-usage-stats=false`` was
    rendered before, which ``ray start`` refuses (the flag takes no value)."""
    cmd = ray_start_command("worker", {"disable-usage-stats": value}, {}, GCS)
    assert "disable-usage-stats" not in cmd


def test_options_that_take_true_or_false_keep_their_value() -> None:
    cmd = ray_start_command("head", {"include-dashboard": "false", "log-color": "true"}, {}, GCS)
    assert "--include-dashboard=false" in cmd.split()
    assert "--log-color=true" in cmd.split()


def test_the_autoscaled_head_runs_no_monitor() -> None:
    head = ray_start_command("head", {"no-monitor": "false"}, {}, GCS, autoscaling=True)
    assert "--no-monitor" in head.split()
    assert "--no-monitor" not in ray_start_command("head", {}, {}, GCS).split()
    assert "--no-monitor" not in ray_start_command("worker", {}, {}, GCS, autoscaling=True)


def test_user_command_runs_before_ulimit_and_ray_start() -> None:
    """KubeRay's order and spacing: ``<command> <args> && ulimit -n 65536; ray start``."""
    command, args = container_shell({"command": ["echo 123"], "args": ["456"]}, "ray start --head")
    assert command == ["/bin/bash", "-c", "--"]
    assert args == [" echo 123  456  && ulimit -n 65536; ray start --head"]
    assert container_shell({}, "ray start --head")[1] == ["ulimit -n 65536; ray start --head"]


def test_probes_use_http_for_new_ray_and_python_for_old() -> None:
    new = probes.ray_probe("head", "2.60.0", liveness=True)
    assert new["httpGet"] == {"path": "/api/healthz", "port": 52365}
    old = probes.ray_probe("head", "2.46.0", liveness=False)
    command = old["exec"]["command"]
    assert command[:2] == ["python3", "-c"]
    assert "52365/api/local_raylet_healthz" in command[2]
    assert "8265/api/gcs_healthz" in command[2]
    assert "wget" not in " ".join(command)
    worker_old = probes.ray_probe("worker", "2.9.0", liveness=False)
    assert "gcs_healthz" not in worker_old["exec"]["command"][2]
