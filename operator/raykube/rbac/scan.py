"""Find every Kubernetes API call the operator makes, by reading its source.

``adapters/kube.py`` is the only module that talks to the API server, so every
request is a call of one of its ``Kube`` methods. This module walks the
package's syntax trees, finds those calls, and works out which resource each
one touches and with which RBAC verb:

* the resource is the ``Resource`` constant passed as the first argument
  (``kube.get(PODS, ...)``); when that argument is a parameter of the
  enclosing function, the callers of that function are followed;
* ``apply(obj)`` and other object arguments are typed by the objects that the
  enclosing function builds (a dict display with ``apiVersion``, ``kind`` and
  ``metadata`` in any function it calls, transitively) and mapped to a
  resource through ``kube.BY_KIND``, the table ``apply`` itself uses;
* ``proxy(method, ...)`` is authorized as ``services/proxy`` with the verb
  of the HTTP method, followed back to the string literals callers pass.

Anything it cannot resolve is an error naming the file and line, so a call
can never slip past the generated RBAC unnoticed.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import raykube
from raykube.adapters import kube

T = TypeVar("T")
Function = ast.FunctionDef | ast.AsyncFunctionDef
PACKAGE = Path(raykube.__file__).resolve().parent

#: RBAC verbs of each ``Kube`` method. The API server authorizes a request by
#: its HTTP method: PUT is "update", POST "create", PATCH "patch".
METHOD_VERBS: dict[str, tuple[str, ...]] = {
    "get": ("get",),
    "create": ("create",),
    "update": ("update",),
    "delete": ("delete",),
    "patch": ("patch",),
    # Server-side apply is a PATCH; for an object that does not exist yet the
    # API server also authorizes "create", since the patch creates it.
    "apply": ("create", "patch"),
    "create_object": ("create",),
    "get_object": ("get",),
    "event": ("create",),
    "proxy": (),  # the verb of the HTTP method argument
}
#: ``Kube`` methods that send nothing to the API server.
NOT_REQUESTS = frozenset({"connect", "close"})
HTTP_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
#: Names the code gives a ``Kube`` (or the ``ProxyTransport`` it implements).
RECEIVERS = frozenset({"kube", "_kube", "_proxy"})
#: Methods whose first argument is an object, not a Resource.
OBJECT_METHODS = frozenset({"apply", "create_object", "get_object"})
FIXED_RESOURCES = {"event": kube.EVENTS, "proxy": kube.SERVICES}
FIXED_SUBRESOURCES = {"proxy": "proxy"}
MAX_DEPTH = 6


Value = kube.Resource | str


@dataclass(frozen=True)
class Known:
    """Values already resolved, carried along while other arguments are followed."""

    values: frozenset[Value]


class Unresolved(Exception):
    """A call whose resource or verb cannot be told from the source."""


@dataclass(frozen=True, order=True)
class Use:
    """One verb on one resource, and where the code asks for it."""

    group: str
    resource: str  # plural, or plural/subresource
    verb: str
    where: str


def resources() -> dict[str, kube.Resource]:
    """Every ``Resource`` constant of adapters/kube.py, by its name there."""
    return {n: v for n, v in vars(kube).items() if isinstance(v, kube.Resource)}


@dataclass
class Module:
    name: str  # dotted
    path: Path
    root: Path  # the directory holding the package
    tree: ast.Module
    functions: dict[str, list[Function]] = field(default_factory=dict)
    #: local name -> (module, attribute or None for a module import)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    constants: dict[str, ast.expr] = field(default_factory=dict)
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)

    @property
    def rel(self) -> str:
        return str(self.path.relative_to(self.root))


def load(package: Path = PACKAGE) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = Module(name, path, package.parent, ast.parse(path.read_text(), str(path)))
        _index(module)
        modules[name] = module
    return modules


def _index(module: Module) -> None:
    for node in ast.walk(module.tree):
        for child in ast.iter_child_nodes(node):
            module.parents[child] = node
        if isinstance(node, Function):
            module.functions.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (alias.name, None)
    for stmt in module.tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                module.constants[target.id] = stmt.value


class Scanner:
    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.resources = resources()
        self._built: dict[int, set[str]] = {}

    # --- finding the calls -----------------------------------------------------------------

    def uses(self) -> list[Use]:
        found: set[Use] = set()
        for module in self.modules.values():
            if module.name == kube.__name__:
                continue
            for call, method in _kube_calls(module):
                found.update(self._uses_of(module, call, method))
            found.update(self._delegated(module))
            found.update(self._blocking_owners(module))
        return sorted(found)

    def _blocking_owners(self, module: Module) -> Iterator[Use]:
        """Owner references with ``blockOwnerDeletion: true``: where the API server
        enforces owner-reference permissions (OwnerReferencesPermissionEnforcement,
        on by default in some distributions), setting one needs ``update`` on the
        owner's ``finalizers`` subresource."""
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.Dict):
                continue
            keys = _str_keys(node)
            block = keys.get("blockOwnerDeletion")
            if not (isinstance(block, ast.Constant) and block.value is True) or "kind" not in keys:
                continue
            # Every kind the reference can name: one builder serves several owners.
            try:
                kinds = {str(v) for v in self.values(module, keys["kind"], node)}
            except Unresolved:
                kinds = {self._kind_value(module, keys["kind"], node) or ""}
            for kind in sorted(kinds):
                res = kube.BY_KIND.get(kind)
                if res is None:
                    raise Unresolved(f"{module.rel}:{node.lineno}: owner kind not in BY_KIND")
                where = f"{module.rel}:{node.lineno} (blockOwnerDeletion)"
                yield Use(res.group, f"{res.plural}/finalizers", "update", where)

    def _delegated(self, module: Module) -> Iterator[Use]:
        """What creating RBAC objects takes beyond ``create``: the rules of a Role
        the operator creates (the API server lets only a holder of those rules
        create it), and ``bind`` on the ClusterRole a RoleBinding it creates
        grants (the autoscaler's, named by a setting: see ``rbac.RULE_SETS``)."""
        for node in ast.walk(module.tree):
            if self._object_kind(module, node) == "RoleBinding":
                assert isinstance(node, ast.Dict)
                ref = _str_keys(node).get("roleRef")
                kind = _str_keys(ref).get("kind") if isinstance(ref, ast.Dict) else None
                if isinstance(kind, ast.Constant) and kind.value == "ClusterRole":
                    where = f"{module.rel}:{node.lineno} (RoleBinding of a ClusterRole)"
                    yield Use("rbac.authorization.k8s.io", "clusterroles", "bind", where)
                continue
            if self._object_kind(module, node) not in ("Role", "ClusterRole"):
                continue
            assert isinstance(node, ast.Dict)
            rules = _str_keys(node).get("rules")
            where = f"{module.rel}:{node.lineno} (granted onwards)"
            try:
                literal = ast.literal_eval(rules) if rules is not None else []
            except ValueError:
                raise Unresolved(f"{where}: the rules of a Role must be a literal") from None
            for rule in literal:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            yield Use(group, resource, verb, where)

    def _uses_of(self, module: Module, call: ast.Call, method: str) -> Iterator[Use]:
        where = f"{module.rel}:{call.lineno}"
        for res, sub in self._targets(module, call, method):
            resource = f"{res.plural}/{sub}" if sub else res.plural
            for verb in self._verbs(module, call, method):
                yield Use(res.group, resource, verb, where)

    def _targets(
        self, module: Module, call: ast.Call, method: str
    ) -> Iterator[tuple[kube.Resource, str]]:
        if method in FIXED_RESOURCES:
            yield FIXED_RESOURCES[method], FIXED_SUBRESOURCES.get(method, "")
            return
        if not call.args:
            raise Unresolved(f"{module.rel}:{call.lineno}: {method}() without arguments")
        if method in OBJECT_METHODS:
            for kind in self.kinds(module, call.args[0], call):
                if kind not in kube.BY_KIND:
                    raise Unresolved(
                        f"{module.rel}:{call.lineno}: {method}() of a {kind}, "
                        "which adapters/kube.py's BY_KIND does not know"
                    )
                yield kube.BY_KIND[kind], ""
            return
        sub: ast.expr = ast.Constant("")
        for kw in call.keywords:
            if kw.arg == "subresource":
                sub = kw.value
        # Resolved together: a helper called with (RAYCLUSTERS, "status") and
        # (SERVICES, "") must not yield services/status.
        for value, subresource in self.joint(module, [call.args[0], sub], call):
            if not isinstance(value, kube.Resource):
                raise Unresolved(f"{module.rel}:{call.lineno}: {value!r} is not a Resource")
            yield value, str(subresource)

    def _verbs(self, module: Module, call: ast.Call, method: str) -> tuple[str, ...]:
        if method != "proxy":
            return METHOD_VERBS[method]
        verbs = set()
        for value in self.values(module, call.args[0], call):
            if str(value).upper() not in HTTP_VERBS:
                raise Unresolved(f"{module.rel}:{call.lineno}: HTTP method {value!r}")
            verbs.add(HTTP_VERBS[str(value).upper()])
        return tuple(sorted(verbs))

    # --- values: Resource constants and string literals --------------------------------------

    def values(self, module: Module, expr: ast.expr, at: ast.AST, depth: int = 0) -> set[Value]:
        return {found[0] for found in self.joint(module, [expr], at, depth)}

    def joint(
        self, module: Module, exprs: list[ast.expr | Known], at: ast.AST, depth: int = 0
    ) -> set[tuple[Value, ...]]:
        """The combinations of values the expressions take together, following
        parameters of the enclosing function back through each of its callers."""
        func = _enclosing(module, at)
        params = set(_params(func)) if func is not None else set()
        pending = [isinstance(e, ast.Name) and e.id in params for e in exprs]
        now = [
            e if p or isinstance(e, Known) else Known(self._value(module, e, at, depth))
            for e, p in zip(exprs, pending, strict=True)
        ]
        if func is None or not any(pending):
            return set(itertools.product(*[cast(Known, e).values for e in now]))
        if depth >= MAX_DEPTH:
            raise Unresolved(f"{module.rel}:{func.lineno}: passed through too many calls")
        out: set[tuple[Value, ...]] = set()
        for caller_module, call in self._callers(module, func):
            args = [_argument(func, call, e.id) if isinstance(e, ast.Name) else e for e in now]
            if all(a is not None for a in args):
                out |= self.joint(
                    caller_module, cast(list[ast.expr | Known], args), call, depth + 1
                )
        if not out:
            raise Unresolved(f"{module.rel}:{func.lineno}: no caller of {func.name}() says")
        return out

    def _value(self, module: Module, expr: ast.expr, at: ast.AST, depth: int) -> frozenset[Value]:
        """One expression that is no parameter: a literal or a constant."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return frozenset({expr.value})
        name = _name(expr)
        if name in self.resources and self._is_kube_name(module, expr):
            return frozenset({self.resources[name]})
        if isinstance(expr, ast.Name) and expr.id in module.constants and depth < MAX_DEPTH:
            return frozenset(self.values(module, module.constants[expr.id], at, depth + 1))
        raise Unresolved(
            f"{module.rel}:{getattr(expr, 'lineno', '?')}: cannot tell the value of "
            f"`{ast.unparse(expr)}`; pass a Resource constant or a literal"
        )

    def _is_kube_name(self, module: Module, expr: ast.expr) -> bool:
        if isinstance(expr, ast.Name):
            return module.imports.get(expr.id, ("", None))[0] == kube.__name__
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            origin = module.imports.get(expr.value.id)
            return origin is not None and _joined(origin) == kube.__name__
        return False

    def _via_callers(
        self,
        module: Module,
        func: Function,
        param: str,
        depth: int,
        resolve: Callable[[Module, ast.expr, ast.AST, int], set[T]],
    ) -> set[T]:
        if depth >= MAX_DEPTH:
            raise Unresolved(f"{module.rel}:{func.lineno}: `{param}` passed through too many calls")
        out: set[T] = set()
        callers = list(self._callers(module, func))
        if not callers:
            raise Unresolved(
                f"{module.rel}:{func.lineno}: no caller of {func.name}() passes {param}"
            )
        for caller_module, call in callers:
            arg = _argument(func, call, param)
            if arg is not None:
                out |= resolve(caller_module, arg, call, depth + 1)
        if not out:
            raise Unresolved(
                f"{module.rel}:{func.lineno}: no caller of {func.name}() passes {param}"
            )
        return out

    def _callers(self, module: Module, func: Function) -> Iterator[tuple[Module, ast.Call]]:
        # A method (``self`` first) is called as ``obj.name(...)`` from modules
        # that never import its name: every such attribute call is a caller.
        method = [a.arg for a in func.args.args[:1]] == ["self"]
        for other in self.modules.values():
            imported = other.imports.get(func.name) == (module.name, func.name)
            if other is not module and not imported and not method:
                continue
            for node in ast.walk(other.tree):
                if not isinstance(node, ast.Call) or _name(node.func) != func.name:
                    continue
                if (
                    other is not module
                    and not imported
                    and not isinstance(node.func, ast.Attribute)
                ):
                    continue
                yield other, node

    # --- kinds of objects ---------------------------------------------------------------------

    def kinds(self, module: Module, expr: ast.expr, at: ast.AST, depth: int = 0) -> set[str]:
        """Kinds an object argument can have: what the enclosing function builds."""
        func = _enclosing(module, at)
        if func is None:
            raise Unresolved(
                f"{module.rel}:{getattr(at, 'lineno', '?')}: object outside a function"
            )
        if isinstance(expr, ast.Name) and expr.id in _params(func):
            return self._via_callers(module, func, expr.id, depth, self.kinds)
        built = self._built_by(module, func, set())
        if not built:
            raise Unresolved(
                f"{module.rel}:{getattr(at, 'lineno', '?')}: cannot tell the kind of "
                f"`{ast.unparse(expr)}` (no object is built in {func.name}())"
            )
        return built

    def _built_by(self, module: Module, func: Function, seen: set[int]) -> set[str]:
        if id(func) in self._built:
            return self._built[id(func)]
        if id(func) in seen:
            return set()
        seen.add(id(func))
        kinds = {k for node in ast.walk(func) if (k := self._object_kind(module, node))}
        for node in ast.walk(func):
            if isinstance(node, ast.Call):
                for target_module, target in self._definitions(module, node.func):
                    kinds |= self._built_by(target_module, target, seen)
        self._built[id(func)] = kinds
        return kinds

    def _object_kind(self, module: Module, node: ast.AST) -> str | None:
        """The kind of a whole-object dict display (apiVersion, kind, metadata)."""
        if not isinstance(node, ast.Dict):
            return None
        keys = _str_keys(node)
        if not {"apiVersion", "kind", "metadata"} <= keys.keys():
            return None
        return self._kind_value(module, keys["kind"], node)

    def _kind_value(self, module: Module, expr: ast.expr, at: ast.AST) -> str | None:
        # Not a whole object (a schema, say) when the kind is no string we can read.
        for read in (self.values, lambda m, e, _: self._constant(m, e)):
            try:
                return next((str(v) for v in read(module, expr, at)), None)
            except Unresolved:
                continue
        return None

    def _constant(self, module: Module, expr: ast.expr) -> set[Value]:
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
            origin = module.imports.get(expr.value.id)
            target = self.modules.get(_joined(origin)) if origin else None
            if target is not None and expr.attr in target.constants:
                return self.values(target, target.constants[expr.attr], target.tree)
        raise Unresolved(f"{module.rel}:{getattr(expr, 'lineno', '?')}: kind `{ast.unparse(expr)}`")

    def _definitions(self, module: Module, func: ast.expr) -> Iterator[tuple[Module, Function]]:
        """Functions of the package a call may run (by name, through imports)."""
        if isinstance(func, ast.Name):
            if func.id in module.functions:
                yield from ((module, f) for f in module.functions[func.id])
                return
            origin = module.imports.get(func.id)
            target = self.modules.get(origin[0]) if origin else None
            if target is not None and origin and origin[1] in target.functions:
                yield from ((target, f) for f in target.functions[origin[1]])
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            origin = module.imports.get(func.value.id)
            target = self.modules.get(_joined(origin)) if origin else None
            if target is not None and func.attr in target.functions:
                yield from ((target, f) for f in target.functions[func.attr])


# --- syntax helpers -------------------------------------------------------------------------


def _kube_calls(module: Module) -> Iterator[tuple[ast.Call, str]]:
    """Calls ``<...>.kube.<method>(...)`` of a Kube method that sends a request."""
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method = node.func.attr
        if method in METHOD_VERBS and _name(node.func.value) in RECEIVERS:
            yield node, method


def _name(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return expr.attr
    return None


def _joined(origin: tuple[str, str | None] | None) -> str:
    if origin is None:
        return ""
    module, attr = origin
    return f"{module}.{attr}" if attr else module


def _str_keys(node: ast.Dict) -> dict[str, ast.expr]:
    """The entries of a dict display whose keys are string literals."""
    out = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            out[key.value] = value
    return out


def _enclosing(module: Module, node: ast.AST) -> Function | None:
    current = module.parents.get(node)
    while current is not None and not isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef):
        current = module.parents.get(current)
    return current


def _params(func: Function) -> list[str]:
    a = func.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def _argument(func: Function, call: ast.Call, param: str) -> ast.expr | None:
    """The expression ``call`` passes for ``param`` of ``func`` (or its default)."""
    for kw in call.keywords:
        if kw.arg == param:
            return kw.value
    positional = [p.arg for p in (*func.args.posonlyargs, *func.args.args)]
    bound = isinstance(call.func, ast.Attribute) and positional[:1] in (["self"], ["cls"])
    if bound:
        positional = positional[1:]
    if param in positional:
        index = positional.index(param)
        if index < len(call.args) and not isinstance(call.args[index], ast.Starred):
            return call.args[index]
    return _default(func, param)


def _default(func: Function, param: str) -> ast.expr | None:
    a = func.args
    positional = [*a.posonlyargs, *a.args]
    offset = len(positional) - len(a.defaults)
    for i, p in enumerate(positional):
        if p.arg == param and i >= offset:
            return a.defaults[i - offset]
    for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        if p.arg == param:
            return d
    return None
