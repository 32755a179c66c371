"""Bearer keys: client and admin key rings."""

from __future__ import annotations

import pytest

from gateway.auth import KeyRing, bearer_token
from gateway.errors import AuthenticationError, ConfigError, PermissionDeniedError

CLIENT = {"web-app": "sk-client-web", "eval": "sk-client-eval"}
ADMIN = {"ops": "sk-admin-ops"}


def client_ring() -> KeyRing:
    return KeyRing(CLIENT, plane="client", other_plane=ADMIN)


def admin_ring() -> KeyRing:
    return KeyRing(ADMIN, plane="admin", other_plane=CLIENT)


@pytest.mark.parametrize(("name", "key"), sorted(CLIENT.items()))
def test_right_key_returns_its_name(name: str, key: str) -> None:
    """A configured key authenticates as its own name (not another key's)."""
    assert client_ring().authenticate(f"Bearer {key}") == name


def test_scheme_is_case_insensitive_and_token_whitespace_is_trimmed() -> None:
    """``bearer`` in any case works and surrounding spaces around the token are ignored."""
    assert client_ring().authenticate("bearer sk-client-web") == "web-app"
    assert client_ring().authenticate("BEARER   sk-client-web  ") == "web-app"


@pytest.mark.parametrize(
    "header",
    ["Bearer sk-client-wrong", "Bearer sk-client-web-extra", "Bearer SK-CLIENT-WEB"],
)
def test_wrong_key_is_rejected_with_401(header: str) -> None:
    """An unknown key, a longer key and a different-case key all get AuthenticationError."""
    with pytest.raises(AuthenticationError) as info:
        client_ring().authenticate(header)
    assert info.value.status_code == 401
    assert "sk-" not in info.value.message  # never echo a key


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic c2stY2xpZW50LXdlYg==", "sk-client-web"],
)
def test_missing_or_malformed_header_is_rejected_with_401(header: str | None) -> None:
    """No header, an empty token, another scheme or a bare key get AuthenticationError."""
    with pytest.raises(AuthenticationError):
        client_ring().authenticate(header)


def test_admin_key_on_the_client_plane_is_forbidden_not_unknown() -> None:
    """An admin key sent to the data plane is recognised and refused with 403."""
    with pytest.raises(PermissionDeniedError) as info:
        client_ring().authenticate("Bearer sk-admin-ops")
    assert info.value.status_code == 403


def test_client_key_on_the_admin_plane_is_forbidden() -> None:
    """A client key never reaches the control plane: 403 on the admin ring."""
    with pytest.raises(PermissionDeniedError):
        admin_ring().authenticate("Bearer sk-client-web")
    assert admin_ring().authenticate("Bearer sk-admin-ops") == "ops"


def test_no_client_keys_without_open_access_is_a_config_error_naming_the_setting() -> None:
    """An empty client ring refuses to start and tells which variables to set."""
    with pytest.raises(ConfigError) as info:
        KeyRing({}, plane="client")
    assert "GATEWAY_CLIENT_KEYS" in str(info.value)
    assert "GATEWAY_ALLOW_OPEN_ACCESS" in str(info.value)


def test_no_admin_keys_is_a_config_error_naming_the_admin_setting() -> None:
    """An empty admin ring names GATEWAY_ADMIN_KEYS and offers no open-access escape."""
    with pytest.raises(ConfigError) as info:
        KeyRing({}, plane="admin")
    assert "GATEWAY_ADMIN_KEYS" in str(info.value)
    assert "OPEN_ACCESS" not in str(info.value)


def test_an_empty_key_value_is_a_config_error() -> None:
    """A named key with an empty secret is refused (it would match an empty token)."""
    with pytest.raises(ConfigError):
        KeyRing({"web-app": ""}, plane="client")


@pytest.mark.parametrize("header", [None, "Bearer anything", "garbage"])
def test_open_access_returns_no_name_for_any_header(header: str | None) -> None:
    """With allow_open and no keys every request passes, with key name None."""
    assert KeyRing({}, plane="client", allow_open=True).authenticate(header) is None


def test_open_access_is_ignored_once_keys_are_configured() -> None:
    """allow_open never bypasses configured keys: a missing key still gets 401."""
    ring = KeyRing(CLIENT, plane="client", allow_open=True)
    with pytest.raises(AuthenticationError):
        ring.authenticate(None)
    assert ring.authenticate("Bearer sk-client-eval") == "eval"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Token abc", None),
        ("Bearer", None),
        (None, None),
    ],
)
def test_bearer_token_extracts_the_token(header: str | None, token: str | None) -> None:
    """bearer_token returns the token of a Bearer header and None otherwise."""
    assert bearer_token(header) == token
