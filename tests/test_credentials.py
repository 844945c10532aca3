"""The credentials a request proved: what ``credentials_for`` builds on the request path
is the same frozen dataclass a user builds, field for field."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from dpop_guard.credentials import DPoPCredentials, credentials_for
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
        jkt="jkt-1",
        scheme="DPoP",
        interaction_id="iid-1",
    )


def test_credentials_for_builds_the_frozen_dataclass_with_every_field() -> None:
    built = _built()
    expected = DPoPCredentials(
        subject="alice",
        client_id="client-1",
        scopes=frozenset({"read:accounts", "openid"}),
        jkt="jkt-1",
        expires_at=2_000_000_000,
        scheme="DPoP",
        interaction_id="iid-1",
        x5t_s256="x5t-1",
        acr="urn:acr:strong",
        auth_time=1_700_000_000,
        resources=("https://api.example.com",),
        authorization_details=({"type": "account_information"},),
        grant_id="grant-1",
        consented_claims=("name",),
        client_id_alias="alias-1",
    )
    assert type(built) is DPoPCredentials
    assert dataclasses.is_dataclass(built)
    assert built == expected
    assert repr(built) == repr(expected)
    # Every field is covered: a field added to the class must be filled here too.
    assert dataclasses.asdict(built) == dataclasses.asdict(expected)
    assert all(getattr(built, f.name) is not None for f in dataclasses.fields(built))


def test_credentials_for_builds_read_only_credentials() -> None:
    built = _built()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.jkt = "other"  # type: ignore[misc]
    assert not hasattr(built, "__dict__")


def test_built_credentials_copy_and_pickle() -> None:
    built = _built()
    assert copy.copy(built) == built
    assert pickle.loads(pickle.dumps(built)) == built  # noqa: S301 - our own bytes


def test_user_is_its_credentials_slot_alone() -> None:
    """The middleware builds request.user as DPoPUser(credentials) without calling its
    __init__: that is only sound while the one slot is all __init__ sets. A new slot (in
    DPoPUser or a base) or more work in __init__ fails here."""
    import inspect

    from dpop_guard.credentials import DPoPUser

    slots = [s for k in DPoPUser.__mro__ for s in getattr(k, "__slots__", ())]
    assert slots == ["credentials"]
    body = [
        line.strip()
        for line in inspect.getsource(DPoPUser.__init__).splitlines()[1:]
        if line.strip()
    ]
    assert body == ["self.credentials = credentials"]
    credentials = credentials_for(INFO, 1_800_000_000, (), "jkt-1", "DPoP")
    built = object.__new__(DPoPUser)
    built.credentials = credentials
    assert built.credentials is DPoPUser(credentials).credentials
    assert built.is_authenticated and built.display_name == "alice"
