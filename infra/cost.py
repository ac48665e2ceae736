"""Cost estimates: what a spec's tuning jobs and endpoints cost, from one table of prices.

Vertex bills open-model tuning by training tokens (tokens x epochs) and serving by
machine-hours (one G2 machine with its L4s per replica). Every figure here is an estimate:
list prices, no discounts, taxes or storage, and token counts that may themselves be
estimated. Each price in the table carries its source URL and the date it was read; where no
published figure was found the price is left out, never guessed, and the estimate says so.
A spec's ``prices:`` section overrides or fills in the table (a contract price, a figure read
from the pricing page later).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.spec import Spec

CURRENCY = "USD"
#: Where Google publishes the figures this table holds.
TUNING_PRICES_URL = "https://cloud.google.com/vertex-ai/generative-ai/pricing"
SERVING_PRICES_URL = "https://cloud.google.com/vertex-ai/pricing#prediction-prices"
#: When the table was last checked against those pages.
CHECKED = "2026-12-02"
#: Shown wherever a figure is missing.
NO_PRICE = "no published price in infra/cost.py; set prices: in the spec to estimate it"


@dataclass(frozen=True)
class Price:
    """One published figure.

    Attributes:
        usd: The price in US dollars (per million training tokens, or per machine-hour).
        source: URL of the page it was read from.
        date: When it was read (YYYY-MM-DD).
    """

    usd: float
    source: str
    date: str


#: USD per million training tokens by catalog model id. Empty: the copies of
#: TUNING_PRICES_URL searched on CHECKED did not show a per-token figure for open-model tuning,
#: so none is recorded (see the module docstring).
TUNING_PER_MILLION_TOKENS: dict[str, Price] = {}
#: USD per hour of one prediction replica by G2 machine type (machine and its L4s). Empty for
#: the same reason: SERVING_PRICES_URL's G2 rows were not in the searched copies on CHECKED.
MACHINE_PER_HOUR: dict[str, Price] = {}


def tuning_price(spec: Spec, model_id: str) -> Price | None:
    """The price per million training tokens of ``model_id``: the spec's, else the table's."""
    if spec.prices and model_id in spec.prices.tuning_per_million_tokens:
        return Price(spec.prices.tuning_per_million_tokens[model_id], _spec_source(spec), "spec")
    return TUNING_PER_MILLION_TOKENS.get(model_id)


def machine_price(spec: Spec, machine_type: str) -> Price | None:
    """The price per hour of one ``machine_type`` replica: the spec's, else the table's."""
    if spec.prices and machine_type in spec.prices.machine_per_hour:
        return Price(spec.prices.machine_per_hour[machine_type], _spec_source(spec), "spec")
    return MACHINE_PER_HOUR.get(machine_type)


def job_cost(spec: Spec, name: str, training_tokens: int | None) -> dict[str, Any]:
    """The estimate of one tuning job (JSON-able; ``usd`` None when it cannot be estimated)."""
    job = next((j for j in spec.tuning_jobs if j.name == name), None)
    price = tuning_price(spec, job.base_model) if job else None
    usd = None
    if price is not None and training_tokens is not None:
        usd = round(training_tokens / 1e6 * price.usd, 2)
    return {
        "name": name,
        "training_tokens": training_tokens,
        "usd_per_million_tokens": price.usd if price else None,
        "usd": usd,
        "source": price.source if price else None,
    }


def endpoint_cost(spec: Spec, name: str) -> dict[str, Any]:
    """The hourly estimate of one endpoint: machine price x replicas (min and max)."""
    ep = next((e for e in spec.endpoints if e.name == name), None)
    price = machine_price(spec, ep.machine_type) if ep else None
    lo = hi = None
    if price is not None and ep is not None:
        lo, hi = round(price.usd * ep.min_replicas, 2), round(price.usd * ep.max_replicas, 2)
    return {
        "name": name,
        "machine_type": ep.machine_type if ep else None,
        "min_replicas": ep.min_replicas if ep else None,
        "max_replicas": ep.max_replicas if ep else None,
        "usd_per_machine_hour": price.usd if price else None,
        "usd_per_hour_min": lo,
        "usd_per_hour_max": hi,
        "source": price.source if price else None,
    }


def plan_cost(spec: Spec, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The cost section of a plan document, from its ``jobs`` entries and the spec."""
    job_costs = [job_cost(spec, j["name"], j.get("training_tokens")) for j in jobs]
    ep_costs = [endpoint_cost(spec, e.name) for e in spec.endpoints]
    return {
        "estimate": True,
        "currency": CURRENCY,
        "jobs": job_costs,
        "endpoints": ep_costs,
        "training_usd": _sum(c["usd"] for c in job_costs),
        "serving_usd_per_hour_min": _sum(c["usd_per_hour_min"] for c in ep_costs),
        "serving_usd_per_hour_max": _sum(c["usd_per_hour_max"] for c in ep_costs),
    }


def cost_delta(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """What a change does to the estimates: old, new and delta of training USD and serving
    USD/hour (min replicas); None where either side has no estimate."""
    out: dict[str, Any] = {"estimate": True, "currency": CURRENCY}
    for key in ("training_usd", "serving_usd_per_hour_min"):
        o = (old or {}).get(key)
        n = (new or {}).get(key)
        delta = round(n - o, 2) if o is not None and n is not None else None
        out[key] = {"old": o, "new": n, "delta": delta}
    return out


def job_line(c: dict[str, Any]) -> str:
    """``est. $12.34 (1,234,567 training tokens at $10.00/1M)`` or why there is none."""
    if c["usd"] is None:
        if c["usd_per_million_tokens"] is None:
            return f"cost: {NO_PRICE}"
        return "cost: unknown (training tokens unknown)"
    return (
        f"estimated cost ${c['usd']:,.2f} ({c['training_tokens']:,} training tokens at "
        f"${c['usd_per_million_tokens']:,.2f}/1M; {c['source']})"
    )


def endpoint_line(c: dict[str, Any]) -> str:
    """``estimated $1.23-$2.46/hour (g2-standard-12 x 1-2 replicas)`` or why there is none."""
    if c["usd_per_hour_min"] is None:
        return f"cost: {NO_PRICE}"
    span = (
        f"${c['usd_per_hour_min']:,.2f}"
        if c["min_replicas"] == c["max_replicas"]
        else f"${c['usd_per_hour_min']:,.2f}-${c['usd_per_hour_max']:,.2f}"
    )
    return (
        f"estimated cost {span}/hour ({c['machine_type']} at ${c['usd_per_machine_hour']:,.2f}/h "
        f"x {c['min_replicas']}-{c['max_replicas']} replicas; {c['source']})"
    )


def money(value: float | None) -> str:
    """``$1,234.56`` or ``unknown``."""
    return "unknown" if value is None else f"${value:,.2f}"


def signed_money(value: float | None) -> str:
    """``+$1.00`` / ``-$1.00`` or ``unknown``."""
    if value is None:
        return "unknown"
    return f"{'+' if value >= 0 else '-'}${abs(value):,.2f}"


def _spec_source(spec: Spec) -> str:
    return (spec.prices.source if spec.prices else None) or "the spec's prices:"


def _sum(values: Any) -> float | None:
    values = list(values)
    if not values or any(v is None for v in values):
        return None if values else 0.0
    return round(sum(values), 2)
