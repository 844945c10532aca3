"""The credentials a request proved: the token's facts by reference plus the request's
own fields, read-only, built only once expiry, scopes and step-up hold."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from dpop_guard.credentials import DPoPCredentials, DPoPUser, credentials_for
from dpop_guard.errors import DPoPGuardError
from dpop_guard.introspection import TokenInfo

INFO = TokenInfo(
    subject="alice",
    client_id="client-1",
    scopes=frozenset({"read:accounts", "openid"}),
    expires_at=2_000_000_000,
    jkt="jkt-1",
    x5t_s256="x5t-1",
    acr="urn:acr:strong",
    auth_time=1_700_000_000,
    resources=("https://api.example.com",),
    authorization_details=({"type": "account_information"},),
    grant_id="grant-1",
    consented_claims=("name",),
    client_id_alias="alias-1",
)


def _built() -> DPoPCredentials:
    return credentials_for(
        INFO,
        now=1_800_000_000,
        required=("read:accounts",),
        scheme="DPoP",
        interaction_id="iid-1",
    )


def test_credentials_hold_the_token_facts_and_the_request_fields() -> None:
    """request.auth is the token's facts by reference, plus the scheme and the
    interaction id; every fact reads as an attribute, as before."""
    built = _built()
    assert built == DPoPCredentials(token=INFO, scheme="DPoP", interaction_id="iid-1")
    assert built.token is INFO
    for name in (f.name for f in dataclasses.fields(TokenInfo)):
        assert getattr(built, name) == getattr(INFO, name), name


@pytest.mark.parametrize(
    ("info", "kwargs", "reason"),
    [
        (dataclasses.replace(INFO, expires_at=1_800_000_000), {}, "token_expired"),
        (INFO, {"required": ("write:accounts",)}, "scope_missing"),
        (INFO, {"acr_values": ("urn:acr:other",)}, "acr_not_satisfied"),
        (INFO, {"max_age": 60}, "auth_too_old"),
        (dataclasses.replace(INFO, auth_time=None), {"max_age": 60}, "auth_time_missing"),
    ],
)
def test_credentials_for_refuses(info: TokenInfo, kwargs: dict[str, Any], reason: str) -> None:
    """Expiry, scopes and step-up are checked before credentials are made."""
    arguments: dict[str, Any] = {"now": 1_800_000_000, "required": (), "scheme": "DPoP"}
    with pytest.raises(DPoPGuardError) as excinfo:
        credentials_for(info, **(arguments | kwargs))
    assert excinfo.value.reason == reason


def test_credentials_for_builds_read_only_credentials() -> None:
    built = _built()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.scheme = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        built.jkt = "other"  # type: ignore[misc]
    assert not hasattr(built, "__dict__")


def test_built_credentials_copy_and_pickle() -> None:
    built = _built()
    assert copy.copy(built) == built
    assert pickle.loads(pickle.dumps(built)) == built  # noqa: S301 - our own bytes


def test_user_names_its_subject_or_client() -> None:
    user = DPoPUser(credentials=_built())
    assert user.is_authenticated and user.display_name == "alice" == user.identity
    anonymous = DPoPCredentials(
        token=dataclasses.replace(INFO, subject=None), scheme="DPoP", interaction_id=None
    )
    assert DPoPUser(anonymous).display_name == "client-1"
