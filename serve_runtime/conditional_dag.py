"""The walkthrough's calculator (`import_path: conditional_dag.serve_dag`).

`POST /calc/ ["MUL", 3]` answers `"15 pizzas please!"`: Router sends the
number to Multiplier (`user_config.factor` 5) or, for "ADD", to Adder
(`user_config.increment` 3), and `create_order` turns the result into the
order. Deployment names match the shared manifest: Adder, Multiplier, Router,
create_order and DAGDriver (the ingress).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from raykube_serve.driver import DAGDriver

_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.1},
    "max_ongoing_requests": 64,
}


def _number(config: dict[str, Any], key: str) -> int | float:
    value = config.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"user_config.{key} must be a number, got {value!r}")
    return value


class Add:
    def __init__(self) -> None:
        self._increment: int | float = 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._increment = _number(config, "increment")

    async def apply(self, value: int | float) -> int | float:
        return value + self._increment


class Multiply:
    def __init__(self) -> None:
        self._factor: int | float = 1

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._factor = _number(config, "factor")

    async def apply(self, value: int | float) -> int | float:
        return value * self._factor


async def place_order(amount: int | float) -> str:
    return f"{amount} pizzas please!"


class Route:
    """Chooses the operation, then places the order with its result."""

    def __init__(
        self,
        adder: DeploymentHandle[Any],
        multiplier: DeploymentHandle[Any],
        order: DeploymentHandle[Any],
    ) -> None:
        self._operations = {"ADD": adder, "MUL": multiplier}
        self._order = order

    async def __call__(self, request: Any) -> str:
        operation, value = _parse(request)
        target = self._operations.get(operation)
        if target is None:
            raise ValueError(
                f"unknown operation {operation!r}; use one of {sorted(self._operations)}"
            )
        result = await target.apply.remote(value)
        order: str = await self._order.remote(result)
        return order


def _parse(request: Any) -> tuple[str, int | float]:
    if (
        isinstance(request, list)
        and len(request) == 2
        and isinstance(request[0], str)
        and isinstance(request[1], int | float)
        and not isinstance(request[1], bool)
    ):
        return request[0].upper(), request[1]
    raise ValueError('expected a JSON array ["ADD" or "MUL", number], e.g. ["MUL", 3]')


# Decorators applied as calls so type checkers see Deployments.
Adder = serve.deployment(name="Adder", user_config={"increment": 3}, **_OPTIONS)(Add)
Multiplier = serve.deployment(name="Multiplier", user_config={"factor": 5}, **_OPTIONS)(Multiply)
create_order = serve.deployment(name="create_order", **_OPTIONS)(place_order)
Router = serve.deployment(name="Router", **_OPTIONS)(Route)

serve_dag = DAGDriver.bind(Router.bind(Adder.bind(), Multiplier.bind(), create_order.bind()))
