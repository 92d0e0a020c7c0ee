"""Configuration files of the real node's daemons (pure builders).

Every path is under the node's directories, so two nodes never share a
socket, a state file or a lock, and nothing is written to /etc or /var/lib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.netns import NodeNet

CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
COREDNS_READY_PORT = 8181
COREDNS_USER = "system:raykube:coredns"
REAL_NODE_LABEL = "raykube.io/node-kind"
REAL_NODE_VALUE = "real"
# nodeSelector for pods that must run for real (kwok nodes only pretend).
REAL_NODE_SELECTOR = {REAL_NODE_LABEL: REAL_NODE_VALUE}


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps its files.

    ``state`` is thrown away with the cluster; ``containerd_root`` is kept in
    the cache, per slot, so imported images survive a restart (warm start).
    """

    state: Path
    containerd_root: Path

    @property
    def containerd_state(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def container_logs(self) -> Path:
        return self.state / "container-logs"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def pki(self) -> Path:
        return self.state / "pki"


def containerd_toml(paths: NodePaths, sandbox_image: str, cni_bin_dir: Path) -> str:
    """containerd 1.6 config: CRI on, cgroupfs, runc, CNI, local images only."""
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# Plugins that cannot work here or are not needed; fewer warnings at start.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # The stream server (exec, attach, port-forward) listens in the node's
  # namespace; the kubelet proxies to it.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # This machine withholds CAP_SYS_RESOURCE even from root, so no process
  # may lower its oom_score_adj (the kubelet asks -998 for sandboxes);
  # restricting keeps every container at or above containerd's own value.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{paths.containerd_state / "runc"}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir}"
    conf_dir = "{paths.cni_conf_dir}"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.state / "opt"}"
"""


def cni_conflist(net: NodeNet, paths: NodePaths) -> dict[str, Any]:
    """Pods on one Linux bridge in the node namespace, IPs from the pod CIDR."""
    return {
        "cniVersion": "1.0.0",
        "name": "raykube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "rkbr0",
                "isGateway": True,
                # Pods have nowhere to go beyond the node: no masquerade.
                "ipMasq": False,
                # A pod reaching itself through its own Service.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.pod_gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        ],
    }


def kubelet_config(
    net: NodeNet, paths: NodePaths, ca: Path, cgroup_root: str, resolv_conf: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Listens in the node namespace only; the apiserver calls it there
        # for logs and exec, authenticating with a client certificate.
        "address": net.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(paths.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(paths.pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        # Only holders of a certificate from the cluster CA get this far.
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # Its own cgroup subtree: two nodes (or two runs) never share one,
        # and stopping the node can find every process it left.
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        # These VMs only offer cgroup v1 (the last release that accepts it).
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [net.dns_ip],
        "resolvConf": str(resolv_conf),
        "podLogsDir": str(paths.pod_logs),
        "hairpinMode": "hairpin-veth",
        "maxPods": 110,
        "serializeImagePulls": False,
        "registerNode": True,
        # The disk is shared with builds and caches; evict only when truly full.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def kube_proxy_config(net: NodeNet, kubeconfig: Path, node_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": net.pod_cidr,
        "bindAddress": net.node_ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0 leaves each conntrack sysctl as it is: the namespace's table is
        # the kernel's, and nothing here may load or retune modules.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s", "masqueradeAll": False},
        # Lowering it needs CAP_SYS_RESOURCE, which this machine withholds.
        "oomScoreAdj": 0,
    }


def corefile(kubeconfig: Path) -> str:
    """CoreDNS for cluster.local only: pods have no upstream to forward to."""
    return f""".:53 {{
    errors
    ready 127.0.0.1:{COREDNS_READY_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} default
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "default", "context": {"cluster": "local", "user": user}}],
        "current-context": "default",
    }


def cluster_objects(net: NodeNet, apiserver_port: int) -> list[dict[str, Any]]:
    """Objects that make the node's services reachable from pods.

    The control plane advertises 127.0.0.1 and reconciles no endpoints, so the
    ``kubernetes`` Service gets its endpoint here: the relay in the node
    namespace. kube-dns is a selector-less Service whose endpoint is the
    CoreDNS process listening on the node's address.
    """
    return [
        _endpoint_slice("default", "kubernetes", "https", "TCP", net.node_ip, apiserver_port),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            },
            "spec": {
                "clusterIP": net.dns_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        },
        _endpoint_slice("kube-system", "kube-dns", "dns", "UDP", net.node_ip, 53, "kube-dns-udp"),
        _endpoint_slice(
            "kube-system", "kube-dns", "dns-tcp", "TCP", net.node_ip, 53, "kube-dns-tcp"
        ),
        *_coredns_rbac(),
    ]


def _endpoint_slice(
    namespace: str,
    service: str,
    port_name: str,
    protocol: str,
    ip: str,
    port: int,
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or service,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "localcluster.raykube.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
    }


def _coredns_rbac() -> list[dict[str, Any]]:
    rules = [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["list", "watch"]},
    ]  # fmt: skip
    name = "raykube:coredns"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": COREDNS_USER}
            ],
        },
    ]


def dumps(doc: dict[str, Any] | list[dict[str, Any]]) -> str:
    """JSON is YAML: every config above is written as JSON."""
    return json.dumps(doc, indent=2)
