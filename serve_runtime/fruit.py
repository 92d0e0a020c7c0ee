"""The walkthrough's fruit stand (`import_path: fruit.deployment_graph`).

`POST /fruit/ ["MANGO", 2]` answers `6` with MangoStand's `user_config.price`
at 3, and `8` once the price is changed to 4: `reconfigure()` applies the new
`user_config` inside the running replica, so no replica restarts.
Deployment names match the shared manifests: MangoStand, OrangeStand,
PearStand, FruitMarket and DAGDriver (the ingress).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from raykube_serve.driver import DAGDriver

# Cheap async work: size ongoing requests well above Ray's default of 5 so a
# handful of concurrent clients never queue behind an idle replica.
_STAND_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.1},
    "max_ongoing_requests": 64,
}


class FruitStand:
    """A stand sells one fruit at a price that `user_config` sets."""

    def __init__(self) -> None:
        self._price: int | float = 0

    def reconfigure(self, config: dict[str, Any]) -> None:
        price = config.get("price")
        if not isinstance(price, int | float) or isinstance(price, bool) or price < 0:
            raise ValueError(f"user_config.price must be a non-negative number, got {price!r}")
        self._price = price

    async def check_price(self, amount: int | float) -> int | float:
        return self._price * amount


class Market:
    """Routes `[fruit, amount]` to the stand that sells that fruit."""

    def __init__(
        self,
        mango: DeploymentHandle[Any],
        orange: DeploymentHandle[Any],
        pear: DeploymentHandle[Any],
    ) -> None:
        self._stands = {"MANGO": mango, "ORANGE": orange, "PEAR": pear}

    async def __call__(self, order: Any) -> int | float:
        fruit, amount = _parse_order(order)
        stand = self._stands.get(fruit)
        if stand is None:
            raise ValueError(f"unknown fruit {fruit!r}; sold here: {sorted(self._stands)}")
        result: int | float = await stand.check_price.remote(amount)
        return result


def _parse_order(order: Any) -> tuple[str, int | float]:
    if (
        isinstance(order, list)
        and len(order) == 2
        and isinstance(order[0], str)
        and isinstance(order[1], int | float)
        and not isinstance(order[1], bool)
    ):
        return order[0].upper(), order[1]
    raise ValueError('expected a JSON array ["FRUIT", amount], e.g. ["MANGO", 2]')


# One implementation, three deployments: each stand is scaled and priced on
# its own. The decorator is applied as a call so type checkers see a
# Deployment (they ignore class decorators).
MangoStand = serve.deployment(name="MangoStand", user_config={"price": 3}, **_STAND_OPTIONS)(
    FruitStand
)
OrangeStand = serve.deployment(name="OrangeStand", user_config={"price": 2}, **_STAND_OPTIONS)(
    FruitStand
)
PearStand = serve.deployment(name="PearStand", user_config={"price": 1}, **_STAND_OPTIONS)(
    FruitStand
)
FruitMarket = serve.deployment(name="FruitMarket", **_STAND_OPTIONS)(Market)

deployment_graph = DAGDriver.bind(
    FruitMarket.bind(MangoStand.bind(), OrangeStand.bind(), PearStand.bind())
)
