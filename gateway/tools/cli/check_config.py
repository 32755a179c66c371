"""``gateway check-config``: every problem of a routes file in one run, and what to watch for.

Problems (exit 1; a file that cannot be opened: exit 2) come from
:func:`gateway.config.check_config`: schema errors and cross-reference errors together, each
as ``FILE: key.path: what is wrong (fix)``. Warnings (exit 0) come from
:func:`config_warnings`: a model without a price (its cost is logged as ``null`` and counts
nothing in ``gateway_cost_usd_total``) and an upstream key variable that is not set here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.tools.cli.common import AsJson, load_routes, print_json, print_table

if TYPE_CHECKING:  # the config models (pydantic, jsonschema, yaml): loaded by load_routes
    from gateway.config import GatewayConfig, Route

__all__ = ["check_config_command", "config_warnings", "variants_table"]


def config_warnings(config: GatewayConfig, environ: Mapping[str, str]) -> list[str]:
    """What a valid routes file may still get wrong, one line each, naming the file and key.

    * every model a variant or a pass-through uses without an entry in ``prices`` (cost
      unknown: ``cost_usd`` is ``null`` in the log);
    * every upstream's ``api_key_env`` that is not set in ``environ``.
    """
    unpriced: dict[str, list[str]] = {}
    for route in config.routes.values():
        for variant in route.variants.values():
            if not variant.priced:
                unpriced.setdefault(variant.model, []).append(_key_of(route, variant.name))
    warnings = [
        f"{config.path}: prices.{model}: no price for this model (used by {', '.join(users)}); "
        "its cost is logged as null and not counted (add input and output USD per million "
        "tokens)"
        for model, users in unpriced.items()
    ]
    warnings += [
        f"{config.path}: upstreams.{name}.api_key_env: {cfg.api_key_env} is not set in this "
        "environment"
        for name, cfg in config.upstreams.items()
        if cfg.api_key_env and not environ.get(cfg.api_key_env)
    ]
    return warnings


def _key_of(route: Route, variant: str) -> str:
    if route.passthrough:
        return f"passthrough.{route.variants[variant].upstream}"
    return f"routes.{route.name}.variants.{variant}"


def _role(route: Route, variant: str) -> str:
    if route.passthrough:
        return "passthrough"
    if variant == route.candidate:
        return "candidate"
    return "fallback" if variant == route.fallback else "-"


def _variant_rows(config: GatewayConfig) -> list[dict[str, Any]]:
    return [
        {
            "route": route.name,
            "variant": variant.name,
            "role": _role(route, variant.name),
            "upstream": variant.upstream,
            "model": variant.model,
            "few_shot": len(variant.few_shot),
            "priced": variant.priced,
        }
        for route in config.routes.values()
        for variant in route.variants.values()
    ]


def variants_table(config: GatewayConfig) -> Table:
    """One row a variant: route, variant, role, upstream, model, few-shot messages, priced."""
    table = Table(title=Text(f"{config.path}: valid"))
    rows = _variant_rows(config)
    for column in ("route", "variant", "role", "upstream", "model", "few-shot", "priced"):
        table.add_column(column)
    for row in rows:
        cells = [
            *(str(value) for value in list(row.values())[:-1]),
            "yes" if row["priced"] else "no",
        ]
        table.add_row(*(Text(cell) for cell in cells))
    return table


def check_config_command(
    path: Annotated[Path, typer.Argument(help="The routes file to validate.")] = Path(
        "config/gateway.yaml"
    ),
    as_json: AsJson = False,
) -> None:
    """Validate a routes file without serving: every problem in one run (exit 1), then
    warnings (a model without a price, an unset upstream key variable).

    --json prints {"path", "variants": [{route, variant, role, upstream, model, few_shot,
    priced}], "warnings": [...]}; problems go to stderr as one JSON object."""
    config = load_routes(path, where="PATH")
    warnings = config_warnings(config, os.environ)
    if as_json:
        print_json({"path": str(path), "variants": _variant_rows(config), "warnings": warnings})
        return
    print_table(variants_table(config))
    err = Console(stderr=True, highlight=False)
    err.soft_wrap = not err.is_terminal
    for warning in warnings:
        err.print(Text("warning: ", style="yellow") + Text(warning))
