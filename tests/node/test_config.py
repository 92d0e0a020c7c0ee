"""Pure parts of the real node: addressing, configs, image archives."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from localcluster import images, node_config, node_deps
from localcluster.netns import NodeNet
from localcluster.node_config import NodePaths

pytestmark = pytest.mark.node


def test_slots_never_share_names_or_ranges() -> None:
    nets = [NodeNet(slot, "10.96.0.0/16") for slot in range(4)]
    for attr in ("name", "host_if", "node_if", "node_ip", "pod_cidr"):
        values = [getattr(n, attr) for n in nets]
        assert len(set(values)) == len(values), attr
    assert all(len(n.host_if) <= 15 and len(n.node_if) <= 15 for n in nets)  # IFNAMSIZ
    assert nets[0].dns_ip == "10.96.0.10"


def test_kubelet_config_keeps_the_node_in_its_namespace_and_cgroup(tmp_path: Path) -> None:
    net = NodeNet(1, "10.96.0.0/16")
    paths = NodePaths(tmp_path, tmp_path / "root")
    cfg = node_config.kubelet_config(net, paths, tmp_path / "ca.crt", "/raykube-node-1", tmp_path)
    assert cfg["address"] == net.node_ip
    assert cfg["cgroupDriver"] == "cgroupfs" and cfg["cgroupRoot"] == "/raykube-node-1"
    assert cfg["failCgroupV1"] is False and cfg["failSwapOn"] is False
    assert cfg["clusterDNS"] == ["10.96.0.10"]
    assert cfg["authentication"]["anonymous"]["enabled"] is False


def test_containerd_config_puts_everything_under_the_node(tmp_path: Path) -> None:
    paths = NodePaths(tmp_path / "state", tmp_path / "root")
    text = node_config.containerd_toml(paths, "localhost/raykube/pause:x", Path("/usr/lib/cni"))
    assert f'address = "{paths.containerd_socket}"' in text
    assert "SystemdCgroup = false" in text
    assert 'sandbox_image = "localhost/raykube/pause:x"' in text
    assert "/var/lib/containerd" not in text and "/run/containerd" not in text


def test_cni_and_cluster_objects_follow_the_slot(tmp_path: Path) -> None:
    net = NodeNet(2, "10.96.0.0/16")
    conf = node_config.cni_conflist(net, NodePaths(tmp_path, tmp_path))
    bridge = conf["plugins"][0]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.2.0/24", "gateway": "10.244.2.1"}]]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    objects = node_config.cluster_objects(net, 6443)
    api = next(o for o in objects if o["metadata"]["name"] == "kubernetes")
    assert api["endpoints"][0]["addresses"] == [net.node_ip]
    assert api["ports"][0]["port"] == 6443


def test_kube_proxy_leaves_kernel_settings_alone(tmp_path: Path) -> None:
    cfg = node_config.kube_proxy_config(NodeNet(0, "10.96.0.0/16"), tmp_path, "n")
    assert cfg["mode"] == "iptables"
    assert cfg["conntrack"]["maxPerCore"] == 0 and cfg["conntrack"]["min"] == 0


def test_docker_archive_layout(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    out = tmp_path / "img.tar"
    images.write_archive("localhost/raykube/x:1", layer, {"Cmd": ["true"]}, out)
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["localhost/raykube/x:1"]
    diff_id = manifest[0]["Layers"][0].split("/")[0]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{diff_id}"]


def test_build_key_follows_inputs_and_ignores_dockerignored_files(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM x\nCOPY . /app/\n")
    (tmp_path / "app.py").write_text("a")
    (tmp_path / ".dockerignore").write_text("junk/\n")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "big").write_text("1")
    base = images.Image("b", tmp_path / "b.tar", "k")

    def key() -> str:
        return images.build_key(tmp_path / "Dockerfile", tmp_path, "t", {}, base)

    first = key()
    (tmp_path / "junk" / "big").write_text("2")
    assert key() == first
    (tmp_path / "app.py").write_text("b")
    assert key() != first


def test_node_packages_are_pinned() -> None:
    assert {"containerd", "runc", "containernetworking-plugins", "buildah", "mmdebstrap"} <= set(
        node_deps.DEB_PACKAGES
    )
    assert node_deps.COREDNS.startswith("v1.")
