"""Run the ``gateway`` command line in this process against in-process gateways.

A CLI subprocess costs an interpreter start and the CLI's imports (about a second on a loaded
machine) and needs a gateway listening on TCP. :func:`run_cli` invokes the same typer app with
``typer.testing.CliRunner`` instead: the environment is the one given (``GATEWAY_*`` variables
of this process are hidden, as the subprocess tests did), stdout and stderr are kept apart, and
the admin client's HTTP calls (and ``gateway eval``'s ``openai.AsyncOpenAI``) to the URL of an
in-process gateway go through that gateway's bridge (``tests.inprocess_sim``), and so do
``gateway finetune``'s ``openai.OpenAI`` calls to an in-process simulator; any other URL is
reached for real.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

import gateway.tools.admin_client
import gateway.tools.cli.eval_run
import gateway.tools.evaluation.finetune_jobs
from gateway.tools.cli import app
from tests import quick_http
from tests.inprocess_sim import InProcessGatewayUnderTest, InProcessSimulator

__all__ = ["CliRun", "run_cli"]


@dataclass
class CliRun:
    """One finished CLI run: exit code, stdout and stderr."""

    code: int
    out: str
    err: str


class _RoutedHttpx:
    """``httpx`` as the admin client sees it: ``Client(base_url=<an in-process gateway>)``
    gets that gateway's transport; everything else is httpx itself."""

    def __init__(self, gateways: Mapping[str, InProcessGatewayUnderTest]) -> None:
        self._gateways = {url.rstrip("/"): gw for url, gw in gateways.items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)

    def Client(self, *args: Any, **kwargs: Any) -> httpx.Client:
        base = str(kwargs.get("base_url", "")).rstrip("/")
        gw = self._gateways.get(base)
        if gw is not None:
            kwargs.setdefault("transport", gw.transport())
        # A gateway over TCP: the shared TLS context spares ~50 ms of CA loading per command.
        kwargs.setdefault("verify", quick_http.TLS_CONTEXT)
        return httpx.Client(*args, **kwargs)


class _RoutedOpenAI:
    """``openai`` as ``gateway eval`` sees it: ``AsyncOpenAI(base_url=<an in-process
    gateway>/v1)`` gets an http client bridged to that gateway."""

    def __init__(self, gateways: Mapping[str, InProcessGatewayUnderTest]) -> None:
        self._gateways = {url.rstrip("/") + "/v1": gw for url, gw in gateways.items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(openai, name)

    def AsyncOpenAI(self, *args: Any, **kwargs: Any) -> openai.AsyncOpenAI:
        gw = self._gateways.get(str(kwargs.get("base_url", "")).rstrip("/"))
        if gw is not None and "http_client" not in kwargs:
            kwargs["http_client"] = httpx.AsyncClient(transport=gw.async_transport())
        return openai.AsyncOpenAI(*args, **kwargs)


class _RoutedSyncOpenAI:
    """``openai`` as ``gateway finetune`` sees it: ``OpenAI(base_url=<an in-process
    simulator>/v1)`` gets an http client bridged to that simulator."""

    def __init__(self, simulators: Mapping[str, InProcessSimulator]) -> None:
        self._simulators = {url.rstrip("/"): sim for url, sim in simulators.items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(openai, name)

    def OpenAI(self, *args: Any, **kwargs: Any) -> openai.OpenAI:
        sim = self._simulators.get(str(kwargs.get("base_url", "")).rstrip("/"))
        if sim is not None and "http_client" not in kwargs:
            kwargs["http_client"] = httpx.Client(transport=sim.sync_transport())
        return openai.OpenAI(*args, **kwargs)


@contextmanager
def _routed(
    gateways: Mapping[str, InProcessGatewayUnderTest],
    simulators: Mapping[str, InProcessSimulator],
) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gateway.tools.admin_client, "httpx", _RoutedHttpx(gateways))
        patch.setattr(gateway.tools.cli.eval_run, "openai", _RoutedOpenAI(gateways))
        patch.setattr(
            gateway.tools.evaluation.finetune_jobs, "openai", _RoutedSyncOpenAI(simulators)
        )
        yield


def run_cli(
    *args: str,
    env: Mapping[str, str],
    gateways: Mapping[str, InProcessGatewayUnderTest] | None = None,
    simulators: Mapping[str, InProcessSimulator] | None = None,
) -> CliRun:
    """``gateway *args`` in-process with ``env`` (``GATEWAY_*`` and ``OPENAI_*`` of this
    process hidden).

    ``gateways`` maps URLs (as given in ``GATEWAY_URL`` or ``--url``) to in-process gateways,
    ``simulators`` base URLs (``OPENAI_BASE_URL``, with ``/v1``) to in-process simulators.
    A run that ends in an exception other than ``SystemExit`` fails the test with it (a
    subprocess would have printed a traceback)."""
    hidden: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("GATEWAY_", "OPENAI_"))
    }
    runner = CliRunner()
    with _routed(gateways or {}, simulators or {}):
        result = runner.invoke(app, list(args), env={**hidden, **env}, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"gateway {' '.join(args)} raised") from result.exception
    return CliRun(result.exit_code, result.stdout, result.stderr)
