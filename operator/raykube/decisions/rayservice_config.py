"""serveConfigV2: parsed, checked against Ray Serve's schema, hashed (pure).

A config that Ray would refuse never leaves the operator: the RayService says
which key is wrong and the running applications stay as they are. The checks
follow the schema of Ray Serve 2.60 (``ServeDeploySchema``); keys Ray does not
know are passed through, as Ray itself ignores them.

The text is written by a tenant and parsed on the operator's event loop, so
only bounded work is done on it: its size and nesting are capped, anchors and
aliases (which let a few hundred bytes expand to gigabytes) are refused before
anything is built, and the result must be plain JSON, what the dashboard is
sent and the hash is taken of.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from raykube.builders import hashing
from raykube.models import rayservice

PROXY_LOCATIONS = ("Disabled", "HeadOnly", "EveryNode")
# Ray's LoggingConfig forbids keys it does not know.
LOGGING_KEYS = frozenset(
    {"encoding", "log_level", "logs_dir", "enable_access_log", "additional_log_standard_attrs"}
)


@dataclass(frozen=True)
class ServeGoal:
    """The serve config a RayService asks for, ready to submit (or why not)."""

    #: The JSON body of ``PUT /api/serve/applications/`` (empty when invalid).
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Identifies the config; recorded on a cluster once submitted there.
    hash: str = ""
    #: Why the config cannot be submitted, naming the offending key.
    error: str = ""
    app_names: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.error


def parse_serve_config(text: str | None) -> ServeGoal:
    """Parse and check serveConfigV2.

    An unset one (empty ``hash``) leaves Serve alone: nothing is submitted, and
    a ready head is all a new cluster waits for.
    """
    if text is None or not text.strip():
        return ServeGoal()
    if len(text) > MAX_SERVE_CONFIG_CHARS:
        return ServeGoal(
            error=f"serveConfigV2 is longer than {MAX_SERVE_CONFIG_CHARS} characters ({len(text)})"
        )
    try:
        config = load_json_yaml(text)
    except _Refused as err:
        return ServeGoal(error=f"serveConfigV2 is refused{_at(err.problem_mark)}: {err.problem}")
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        return ServeGoal(error=f"serveConfigV2 is not valid YAML{_at(where)}: {problem}")
    except (ValueError, OverflowError) as err:
        # A value YAML's resolver matched but cannot build (a 30 February).
        return ServeGoal(error=f"serveConfigV2 is not valid YAML: {err}")
    problem = json_problem(config)
    if problem:
        return ServeGoal(error=f"serveConfigV2 holds a value JSON cannot carry: {problem}")
    errors = check_config(config)
    if errors:
        shown = "; ".join(errors[:5]) + (
            f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        )
        return ServeGoal(error=f"serveConfigV2 breaks Ray Serve's schema: {shown}")
    names = tuple(str(app.get("name", "default")) for app in config["applications"])
    return ServeGoal(config=config, hash=hashing.digest(config), app_names=names)


# --- bounded YAML -----------------------------------------------------------------

#: Characters of serveConfigV2 read at all: the CRD's maxLength, checked here again
#: for objects stored before it.
MAX_SERVE_CONFIG_CHARS = rayservice.MAX_SERVE_CONFIG_CHARS
#: Mappings and lists inside one another; deeper is refused before it is built.
MAX_NESTING = rayservice.MAX_SERVE_CONFIG_NESTING
#: Digits in one YAML integer: Python's int() of a long one is quadratic.
_MAX_INT_CHARS = 40
_INT64 = 2**63

# libyaml's parser when built with it (as the wheels are): a 256 KiB config parses
# in a fraction of a second instead of about one.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Refused(yaml.YAMLError):
    """YAML that is valid but not read: anchors, aliases, deep nesting, huge integers."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(str(node.value)) > _MAX_INT_CHARS:
            raise _Refused("integers must fit in 64 bits", node.start_mark)
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _at(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _check_events(text: str) -> None:
    """Refuse anchors, aliases and deep nesting from the event stream, before any
    node is built: nothing is expanded or allocated per level."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused(
                "YAML anchors and aliases (&name, *name) are not allowed; write the value out",
                event.start_mark,
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                raise _Refused(
                    f"mappings and lists nested deeper than {MAX_NESTING}",
                    event.start_mark,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def load_json_yaml(text: str) -> Any:
    """``text`` parsed, once it is known to hold no anchor, alias or deep nesting.

    Raises ``yaml.YAMLError`` (``_Refused`` for what is valid YAML but not read),
    or ``ValueError`` for a scalar the resolver matched but cannot build.
    """
    _check_events(text)
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects


def _key_problem(path: str, value: dict[Any, Any]) -> str | None:
    for key in value:
        if not isinstance(key, str):
            return f"{path or 'the top level'}: key {key!r} is not a string (quote it)"
    return None


def _scalar_problem(path: str, value: Any) -> str | None:
    where = path or "the top level"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None if -_INT64 <= value < _INT64 else f"{where}: integers must fit in 64 bits"
    if isinstance(value, float):
        ok = math.isfinite(value)
        return None if ok else f"{where}: NaN and infinite numbers are not JSON"
    if isinstance(value, date):  # datetime too
        return f"{where}: a YAML date/time; quote it to pass a string"
    if isinstance(value, set | frozenset):
        return f"{where}: a YAML set (!!set); use a list"
    if isinstance(value, bytes):
        return f"{where}: YAML binary (!!binary) is not JSON; pass a string"
    if isinstance(value, tuple):
        return f"{where}: a YAML pair (!!omap, !!pairs); use a mapping"
    return f"{where}: a {type(value).__name__} is not JSON"


def json_problem(value: Any, path: str = "") -> str | None:
    """The first place where ``value`` is not plain JSON (string keys, finite
    numbers, no dates, sets or bytes), named by its path; None when it is."""
    if isinstance(value, dict):
        problem = _key_problem(path, value)
        if problem:
            return problem
        for key, item in value.items():
            problem = json_problem(item, f"{path}.{key}" if path else key)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = json_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    return _scalar_problem(path, value)


# --- the schema -----------------------------------------------------------------

Checker = Callable[[str, Any], list[str]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(path: str, value: Any) -> list[str]:
    return [] if isinstance(value, dict) else [f"{path}: must be a mapping"]


def _string(path: str, value: Any) -> list[str]:
    return [] if isinstance(value, str) else [f"{path}: must be a string"]


def _boolean(path: str, value: Any) -> list[str]:
    return [] if isinstance(value, bool) else [f"{path}: must be true or false"]


def _non_negative(path: str, value: Any) -> list[str]:
    ok = value is None or (_is_number(value) and value >= 0)
    return [] if ok else [f"{path}: must be a number >= 0"]


def _positive_int(path: str, value: Any) -> list[str]:
    return [] if _is_int(value) and value > 0 else [f"{path}: must be an integer > 0"]


def _port(path: str, value: Any) -> list[str]:
    ok = _is_int(value) and 0 < value < 65536
    return [] if ok else [f"{path}: must be a port number (1-65535)"]


def _num_replicas(path: str, value: Any) -> list[str]:
    if value is None or value == "auto" or (_is_int(value) and value > 0):
        return []
    return [f'{path}: must be an integer > 0 or "auto"']


def _max_queued(path: str, value: Any) -> list[str]:
    ok = _is_int(value) and (value == -1 or value > 0)
    return [] if ok else [f"{path}: must be -1 (no limit) or an integer > 0"]


def _string_list(path: str, value: Any) -> list[str]:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return [] if ok else [f"{path}: must be a list of strings"]


def _proxy_location(path: str, value: Any) -> list[str]:
    if value in PROXY_LOCATIONS:
        return []
    return [f"{path}: must be one of {', '.join(PROXY_LOCATIONS)}"]


def _route_prefix(path: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, str) and value.startswith("/")):
        return []
    return [f'{path}: must start with "/" (or be null for no HTTP route)']


def _import_path(path: str, value: Any) -> list[str]:
    if not isinstance(value, str) or not value:
        return [f"{path}: must be a non-empty string such as module.attribute or module:attribute"]
    sep = ":" if ":" in value else "."
    module, _, attr = value.rpartition(sep)
    if value.count(":") > 1 or not module or not attr:
        return [f'{path}: "{value}" is not of the form module.attribute or module:attribute']
    return []


def _uri(path: str, value: Any) -> list[str]:
    # Ray refuses bare paths: a working_dir must be a URI (local:// or remote).
    if isinstance(value, str) and "://" in value:
        return []
    return [f'{path}: must be a URI such as "local:///dir" or a zip URL, got {value!r}']


def _runtime_env(path: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: must be a mapping"]
    errors: list[str] = []
    if value.get("working_dir") is not None:
        errors += _uri(f"{path}.working_dir", value["working_dir"])
    modules = value.get("py_modules") or []
    if not isinstance(modules, list):
        return [*errors, f"{path}.py_modules: must be a list"]
    for i, uri in enumerate(modules):
        errors += _uri(f"{path}.py_modules[{i}]", uri)
    return errors


def _logging(path: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: must be a mapping"]
    return [f"{path}.{key}: unknown key" for key in value if key not in LOGGING_KEYS]


def _fields(path: str, value: Any, checks: Mapping[str, Checker]) -> list[str]:
    """Each known key present in ``value`` checked by its checker."""
    errors: list[str] = []
    for key, check in checks.items():
        if key in value and value[key] is not None:
            errors += check(f"{path}.{key}", value[key])
    return errors


ACTOR_OPTIONS: dict[str, Checker] = {
    "num_cpus": _non_negative,
    "num_gpus": _non_negative,
    "memory": _non_negative,
    "resources": _mapping,
    "runtime_env": _runtime_env,
    "accelerator_type": _string,
}


def _actor_options(path: str, value: Any) -> list[str]:
    return _mapping(path, value) or _fields(path, value, ACTOR_OPTIONS)


DEPLOYMENT: dict[str, Checker] = {
    "name": _string,
    "num_replicas": _num_replicas,
    "max_ongoing_requests": _positive_int,
    "max_queued_requests": _max_queued,
    "user_config": _mapping,
    "autoscaling_config": _mapping,
    "graceful_shutdown_wait_loop_s": _non_negative,
    "graceful_shutdown_timeout_s": _non_negative,
    "health_check_period_s": _non_negative,
    "health_check_timeout_s": _non_negative,
    "ray_actor_options": _actor_options,
    "max_replicas_per_node": _positive_int,
    "logging_config": _logging,
}

APPLICATION: dict[str, Checker] = {
    "name": _string,
    "route_prefix": _route_prefix,
    "runtime_env": _runtime_env,
    "args": _mapping,
    "logging_config": _logging,
    "external_scaler_enabled": _boolean,
}

HTTP_OPTIONS: dict[str, Checker] = {
    "host": _string,
    "port": _port,
    "root_path": _string,
    "request_timeout_s": _non_negative,
    "keep_alive_timeout_s": _non_negative,
}

TOP_LEVEL: dict[str, Checker] = {
    "proxy_location": _proxy_location,
    "http_options": lambda p, v: _mapping(p, v) or _fields(p, v, HTTP_OPTIONS),
    "grpc_options": lambda p, v: (
        _mapping(p, v) or _fields(p, v, {"port": _port, "grpc_servicer_functions": _string_list})
    ),
    "logging_config": _logging,
    "target_capacity": lambda p, v: (
        [] if _is_number(v) and 0 <= v <= 100 else [f"{p}: must be a number from 0 to 100"]
    ),
}


def _check_deployment(path: str, dep: Any) -> list[str]:
    if not isinstance(dep, dict):
        return [f"{path}: must be a mapping"]
    if "name" not in dep:
        return [f"{path}.name: required"]
    errors = _fields(path, dep, DEPLOYMENT)
    scaling = dep.get("autoscaling_config")
    if scaling is not None and dep.get("num_replicas") not in (None, "auto"):
        errors.append(f"{path}.num_replicas: cannot be set together with autoscaling_config")
    return errors


def _check_application(path: str, app: Any) -> list[str]:
    if not isinstance(app, dict):
        return [f"{path}: must be a mapping"]
    errors = _import_path(f"{path}.import_path", app.get("import_path"))
    errors += _fields(path, app, APPLICATION)
    if app.get("name") == "":
        errors.append(f"{path}.name: must not be empty")
    # Ray takes the HTTP address from the top-level http_options only.
    errors += [
        f"{path}.{key}: not allowed here, set http_options.{key}"
        for key in ("host", "port")
        if key in app
    ]
    deployments = app.get("deployments", [])
    if not isinstance(deployments, list):
        return [*errors, f"{path}.deployments: must be a list"]
    for i, dep in enumerate(deployments):
        errors += _check_deployment(f"{path}.deployments[{i}]", dep)
    return errors


def _duplicates(values: list[Any]) -> list[Any]:
    return sorted({v for v in values if values.count(v) > 1}, key=str)


def check_config(config: Any) -> list[str]:
    """Every way ``config`` breaks Ray Serve's multi-application schema."""
    if not isinstance(config, dict):
        return ["the top level must be a mapping with an applications list"]
    if "applications" not in config:
        return ["applications: required (a list of Serve applications)"]
    apps = config["applications"]
    if not isinstance(apps, list):
        return ["applications: must be a list"]
    errors = _fields("", config, TOP_LEVEL)
    for i, app in enumerate(apps):
        errors += _check_application(f"applications[{i}]", app)
    if errors:
        return [e.lstrip(".") for e in errors]
    names = [app.get("name", "default") for app in apps]
    routes = [app.get("route_prefix", "/") for app in apps if app.get("route_prefix", "/")]
    errors += [f'applications: name "{n}" is used more than once' for n in _duplicates(names)]
    errors += [
        f'applications: route_prefix "{r}" is used more than once' for r in _duplicates(routes)
    ]
    return errors
