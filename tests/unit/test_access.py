"""Roles, permissions and the location scope of store associates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.access import ROLE_PERMISSIONS, Permission, Principal, Role
from oms.domain.errors import Forbidden


def associate(*codes: str) -> Principal:
    return Principal(
        key_id="k", name="till", role=Role.STORE_ASSOCIATE, location_codes=frozenset(codes)
    )


def test_admin_holds_every_permission_and_only_admin_manages_keys() -> None:
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    holders = {
        role for role, perms in ROLE_PERMISSIONS.items() if Permission.API_KEYS_MANAGE in perms
    }
    assert holders == {Role.ADMIN}


def test_a_missing_permission_is_refused_with_its_name() -> None:
    agent = Principal(key_id="k", name="agent", role=Role.CARE_AGENT)
    agent.require(Permission.ORDERS_READ)
    with pytest.raises(Forbidden) as refused:
        agent.require(Permission.INVENTORY_WRITE)
    assert refused.value.extensions["permission"] == "inventory:write"


def test_store_associates_see_only_their_own_locations() -> None:
    till = associate("S1", "S2")
    till.require_location("S1")
    with pytest.raises(Forbidden):
        till.require_location("S3")
    assert till.visible_locations(["S3", "S2", "DC1", "S1"]) == ["S2", "S1"]


@given(st.sampled_from([Role.ADMIN, Role.INTEGRATION, Role.CARE_AGENT]), st.text(min_size=1))
def test_other_roles_are_not_location_bound(role: Role, code: str) -> None:
    Principal(key_id="k", name="n", role=role).require_location(code)


@given(st.frozensets(st.text(min_size=1), max_size=5), st.text(min_size=1))
def test_an_associate_reaches_a_location_exactly_when_bound_to_it(
    codes: frozenset[str], code: str
) -> None:
    assert associate(*codes).can_access_location(code) == (code in codes)
