"""The shapes of the open Kubernetes objects the builders read (pure).

Pod templates and Service overrides are stored as open objects (see
``podtemplate``), so the CRD schema does not type their insides. The fields
the operator itself reads (labels, annotations, a container's command, args,
env, ports, image and resources) must still have the shapes Kubernetes gives
them, or building a pod would fail with an exception instead of a message: each
check returns the first problem, named by its path in the object. Kubernetes
refuses every one of these shapes too, so nothing it accepts is refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticCustomError

from raykube.models import quantity
from raykube.models.base import SERVICE_TYPES

Check = Callable[[str, Any], str | None]


def _mapping(path: str, value: Any) -> str | None:
    return None if isinstance(value, dict) else f"{path}: must be a mapping"


def _string(path: str, value: Any) -> str | None:
    return None if isinstance(value, str) else f"{path}: must be a string"


def _string_map(path: str, value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return None if ok else f"{path}: must be a mapping of strings"


def _strings(path: str, value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else f"{path}: must be a list of strings"


def _port_number(path: str, value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return None if ok else f"{path}: must be an integer from 1 to 65535"


def _fields(path: str, value: dict[str, Any], checks: dict[str, Check]) -> str | None:
    """The first problem among the keys of ``value`` that ``checks`` knows (unset is fine)."""
    for key, check in checks.items():
        if value.get(key) is not None:
            problem = check(f"{path}.{key}", value[key])
            if problem:
                return problem
    return None


def _each(path: str, value: Any, item: Check) -> str | None:
    if not isinstance(value, list):
        return f"{path}: must be a list"
    for i, entry in enumerate(value):
        problem = item(f"{path}[{i}]", entry)
        if problem:
            return problem
    return None


def _quantities(path: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: must be a mapping"
    for name, amount in value.items():
        try:
            quantity.parse(amount)
        except ValueError as err:
            return f"{path}.{name}: {err}"
    return None


def quantities_problem(value: Any) -> str | None:
    """Where a name → quantity mapping (a group's Ray ``resources``) is wrong."""
    problem = _quantities("", value)
    return problem.lstrip(".: ") if problem else None


RESOURCES: dict[str, Check] = {"limits": _quantities, "requests": _quantities}
PORT: dict[str, Check] = {"containerPort": _port_number, "name": _string, "protocol": _string}
ENV: dict[str, Check] = {"value": _string}


def _resources(path: str, value: Any) -> str | None:
    return _mapping(path, value) or _fields(path, value, RESOURCES)


def _port(path: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: must be a mapping"
    # Required by Kubernetes, and read to build the head Service.
    number = _port_number(f"{path}.containerPort", value.get("containerPort"))
    return number or _fields(path, value, PORT)


def _env_var(path: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: must be a mapping"
    return _string(f"{path}.name", value.get("name")) or _fields(path, value, ENV)


CONTAINER: dict[str, Check] = {
    "name": _string,
    "image": _string,
    "command": _strings,
    "args": _strings,
    "env": lambda p, v: _each(p, v, _env_var),
    "ports": lambda p, v: _each(p, v, _port),
    "resources": _resources,
}
METADATA: dict[str, Check] = {
    "name": _string,
    "labels": _string_map,
    "annotations": _string_map,
}


def _container(path: str, value: Any) -> str | None:
    return _mapping(path, value) or _fields(path, value, CONTAINER)


def _metadata(path: str, value: Any) -> str | None:
    return _mapping(path, value) or _fields(path, value, METADATA)


def pod_template_problem(template: Any) -> str | None:
    """Where a PodTemplateSpec has a shape Kubernetes would refuse, if anywhere
    the operator reads."""
    if not isinstance(template, dict):
        return "must be a mapping"
    problem = _fields("", template, {"metadata": _metadata, "spec": _mapping})
    if problem:
        return problem.lstrip(".")
    spec = template.get("spec") or {}
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return "spec.containers: must be a non-empty list"
    return _each("spec.containers", containers, _container)


def _service_port(path: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{path}: must be a mapping"
    number = _port_number(f"{path}.port", value.get("port"))
    return number or _fields(path, value, {"name": _string, "protocol": _string})


def _service_type(path: str, value: Any) -> str | None:
    if value in SERVICE_TYPES:
        return None
    if value == "ExternalName":
        return f"{path}: ExternalName is refused (the operator would follow its DNS name)"
    return f"{path}: must be one of {', '.join(SERVICE_TYPES)}"


SERVICE_SPEC: dict[str, Check] = {
    "type": _service_type,
    "ports": lambda p, v: _each(p, v, _service_port),
}


def _service_spec(path: str, value: Any) -> str | None:
    return _mapping(path, value) or _fields(path, value, SERVICE_SPEC)


def service_problem(value: Any) -> str | None:
    """Where a Service merged into one the operator builds (``headService``,
    ``serveService``) has a metadata, type or ports of the wrong shape: the
    operator applies the Service with them, and the API server would refuse it."""
    if not isinstance(value, dict):
        return "must be a mapping"
    problem = _fields("", value, {"metadata": _metadata, "spec": _service_spec})
    return problem.lstrip(".") if problem else None


def refuse(problem: str | None) -> None:
    """Raise ``problem`` as a validation error of the field being validated; its
    message is the problem alone, under the field's path."""
    if problem:
        raise PydanticCustomError("object_shape", "{problem}", {"problem": problem})
