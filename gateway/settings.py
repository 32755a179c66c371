"""Process-level settings (12-factor): environment variables ``GATEWAY_*``, nested with ``__``.

Secrets (client keys, admin keys, upstream API keys) only ever come from the environment or from
a mounted file named by a ``*_FILE`` setting, never from the routes file. Loaded by
pydantic-settings; an optional ``.env`` in the working directory is read too.

Examples::

    GATEWAY_CONFIG=config/gateway.yaml
    GATEWAY_CLIENT_KEYS='{"web-app": "sk-..."}'      # name -> key, JSON
    GATEWAY_CLIENT_KEYS_FILE=/run/secrets/client-keys.json
    GATEWAY_OVERRIDE_KEYS='["eval"]'                  # key names allowed to force a variant
    GATEWAY_UPSTREAM__MAX_CONNECTIONS=512
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from gateway.errors import ConfigError

__all__ = ["ConsoleSettings", "Settings", "UpstreamSettings", "load_key_file", "load_settings"]

_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+")


class UpstreamSettings(BaseModel):
    """The pooled upstream HTTP client (one pool per upstream).

    Timeouts are in seconds. The read timeout is the upstream's own ``timeout_s`` in the routes
    file, because it depends on the model behind it.
    """

    transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="aiohttp: one aiohttp.ClientSession per upstream, called directly (the "
        "default, the faster); httpx: httpx's own pool (encode/httpx#3215).",
    )
    max_connections: int = Field(512, ge=1, description="Connections per upstream at most.")
    max_keepalive_connections: int = Field(128, ge=0)
    keepalive_expiry_s: float = Field(
        4.0,
        gt=0,
        description="Idle upstream connections are not reused after this many seconds. Below "
        "the 5 s keep-alive of uvicorn (vLLM, LiteLLM, this project's simulator) and Node "
        "servers, so the gateway never sends on a connection the upstream is closing (that race "
        "made a request fail over with reason connect).",
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    pool_timeout_s: float = Field(5.0, gt=0, description="Wait for a free connection, then 503.")
    max_event_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest SSE event relayed from an upstream stream; a larger one ends the "
        "stream with an error event and closes the upstream.",
    )


class ConsoleSettings(BaseModel):
    """The ops console at ``/admin/ui`` (``GATEWAY_CONSOLE__*``): its login sessions and how
    often an open page reads the admin API.

    A session is a signed cookie (HMAC-SHA256 with ``session_secret``, carrying its expiry), so
    every replica that shares the secret accepts it. Without a secret each process makes a
    random one at start: sessions then end with the process and work on that replica only.
    """

    session_secret: SecretStr | None = Field(
        None,
        description="Signs console session cookies; give every replica the same one (at least "
        "32 characters). Unset: random per process.",
    )
    session_ttl_s: float = Field(
        8 * 3600.0, gt=0, description="A console session lasts this long after login (seconds)."
    )
    refresh_s: float = Field(
        2.0,
        ge=0.2,
        le=60.0,
        description="An open console page reads the admin API this often (seconds); each read "
        "is three admin GETs. The quality chart keeps 300 points per route.",
    )
    login_attempts_per_minute: int = Field(
        10,
        ge=0,
        description="Console login attempts (POST /admin/ui/login, right or wrong) allowed per "
        "client address in a minute, counted by each replica (each worker process) on its own; "
        "more are answered 429 with Retry-After until the minute that began with the first "
        "attempt is over. 0: no limit.",
    )
    secure_cookie: Literal["auto", "always", "never"] = Field(
        "auto",
        description="The session cookie's Secure attribute: auto sets it on https requests "
        "(behind a TLS proxy: X-Forwarded-Proto from the addresses in uvicorn's "
        "FORWARDED_ALLOW_IPS), always or never.",
    )


class Settings(BaseSettings):
    """All process settings. Field ``x`` is read from ``GATEWAY_X``."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_payloads: bool = Field(False, description="Log prompt and completion text (off: never).")
    config: Path = Field(Path("config/gateway.yaml"), description="The routes file.")
    flag_store: str = Field(
        "sqlite:///var/gateway-flags.db",
        description="sqlite:///PATH (embedded default) or redis://HOST:PORT/DB (replicas).",
    )
    flag_store_namespace: str = Field("gateway", description="Redis key prefix.")
    flag_poll_interval_s: float = Field(
        0.25, gt=0, description="How often each replica checks the store for missed changes."
    )
    guard_tick_s: float = Field(0.1, gt=0, description="How often the guard decides.")
    guard_flush_s: float = Field(
        0.02,
        gt=0,
        description="How often each replica shares its outcome counts through the flag store "
        "and reads the route-wide totals the guard decides on.",
    )
    guard_webhook_url: str | None = Field(
        None, description="POSTed a JSON notice when the guard rolls a route back."
    )
    feedback_max_requests: int = Field(
        100_000, ge=1, description="Recent request ids kept for feedback attribution."
    )
    feedback_ttl_s: float = Field(86_400.0, gt=0, description="Feedback accepted this long.")
    client_keys: dict[str, SecretStr] = Field(default_factory=dict, description="name -> key")
    client_keys_file: Path | None = None
    admin_keys: dict[str, SecretStr] = Field(default_factory=dict, description="name -> key")
    admin_keys_file: Path | None = None
    override_keys: list[str] = Field(
        default_factory=list,
        description="Client key names allowed to force a variant with x-gateway-variant.",
    )
    allow_open_access: bool = Field(
        False, description="Serve the data plane without client keys (never in production)."
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Request line plus headers at most; a larger head gets 431 and the "
        "connection is closed.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Time for a request's headers to arrive, from the connection's start (or the "
        "request's first byte on a kept-alive connection); then the connection is closed.",
    )
    shutdown_grace_s: float = Field(30.0, ge=0, description="Drain time for in-flight streams.")
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call /v1/* (e.g. ["https://app.example"], or '
        '["*"] for any); empty: CORS off, no access-control-* headers, preflights unanswered.',
    )
    cors_max_age_s: int = Field(
        600, ge=0, description="How long a browser may cache a preflight answer (seconds)."
    )
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    replica_id: str | None = Field(
        None,
        max_length=128,
        description="This replica's id in heartbeats, outcome counts and audits (default: "
        "hostname-pid-random; with several workers the pid is appended).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, /metrics needs 'Authorization: Bearer <token>' (401 without).",
    )
    flag_heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between heartbeats; they expire after three."
    )
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each origin is ``*`` or ``scheme://host[:port]`` as a browser sends it in ``Origin``
        (no path; a trailing ``/`` is dropped)."""
        out = []
        for given in value:
            origin = given.strip().rstrip("/")
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{given!r} is not an origin: write scheme://host[:port], or * for any"
                )
            out.append(origin)
        return out

    def all_client_keys(self) -> dict[str, str]:
        """Client keys from ``GATEWAY_CLIENT_KEYS`` merged with ``GATEWAY_CLIENT_KEYS_FILE``."""
        return _merge(self.client_keys, self.client_keys_file, "GATEWAY_CLIENT_KEYS_FILE")

    def all_admin_keys(self) -> dict[str, str]:
        """Admin keys from ``GATEWAY_ADMIN_KEYS`` merged with ``GATEWAY_ADMIN_KEYS_FILE``."""
        return _merge(self.admin_keys, self.admin_keys_file, "GATEWAY_ADMIN_KEYS_FILE")


def _merge(inline: dict[str, SecretStr], path: Path | None, setting: str) -> dict[str, str]:
    keys = {name: secret.get_secret_value() for name, secret in inline.items()}
    if path is not None:
        keys.update(load_key_file(path, setting))
    return keys


def load_key_file(path: Path, setting: str) -> dict[str, str]:
    """Read a mounted key file: a JSON object ``{"name": "key", ...}``.

    Raises:
        ConfigError: the file is missing, not JSON, or not a mapping of strings.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{setting}={path}: cannot read the file ({exc.strerror})"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f'{setting}={path}: line {exc.lineno}: not JSON; write {{"name": "key"}}']
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise ConfigError([f"{setting}={path}: must be a JSON object of name -> non-empty key"])
    return data


def load_settings() -> Settings:
    """Read the settings from the environment.

    Raises:
        ConfigError: a variable has the wrong type; the message names the variable.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = "GATEWAY_" + "__".join(str(p) for p in err["loc"]).upper()
            problems.append(f"environment: {name}: {err['msg']}")
        raise ConfigError(problems) from None
    except SettingsError as exc:
        # pydantic-settings raises this, not ValidationError, when a JSON value does not parse.
        found = re.search(r'field "([^"]+)"', str(exc))
        name = "GATEWAY_" + found.group(1).upper() if found else "a GATEWAY_* variable"
        raise ConfigError([f"environment: {name}: not valid JSON (write a JSON value)"]) from None
