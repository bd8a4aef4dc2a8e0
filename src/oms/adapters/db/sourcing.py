"""SQL storage of sourcing profiles and rule sets: append-only versions."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.bulk import insert_rows_returning_ids
from oms.adapters.db.reference import PROFILES, ReferenceCache, ReferenceView
from oms.adapters.db.tables import (
    sourcing_bid_prices,
    sourcing_decisions,
    sourcing_profiles,
    sourcing_rule_sets,
)
from oms.services.ports import StoredBidPrices, StoredDecision, StoredProfile, StoredRuleSet


class SqlSourcingProfileRepository:
    def __init__(self, connection: Connection, *, reference: ReferenceView | None = None) -> None:
        self._connection = connection
        self._reference = reference or ReferenceView(connection, ReferenceCache())

    def current(self) -> list[StoredProfile]:
        latest = (
            select(
                sourcing_profiles.c.name,
                func.max(sourcing_profiles.c.version).label("version"),
            )
            .group_by(sourcing_profiles.c.name)
            .subquery()
        )
        rows = self._connection.execute(
            select(sourcing_profiles)
            .join(
                latest,
                (sourcing_profiles.c.name == latest.c.name)
                & (sourcing_profiles.c.version == latest.c.version),
            )
            .order_by(sourcing_profiles.c.name)
        )
        return [_profile(row._mapping) for row in rows]

    def get(self, name: str, version: int | None = None) -> StoredProfile | None:
        query = select(sourcing_profiles).where(sourcing_profiles.c.name == name)
        if version is None:
            query = query.order_by(sourcing_profiles.c.version.desc()).limit(1)
        else:
            query = query.where(sourcing_profiles.c.version == version)
        row = self._connection.execute(query).first()
        return _profile(row._mapping) if row else None

    def versions(self, name: str) -> list[StoredProfile]:
        rows = self._connection.execute(
            select(sourcing_profiles)
            .where(sourcing_profiles.c.name == name)
            .order_by(sourcing_profiles.c.version)
        )
        return [_profile(row._mapping) for row in rows]

    def add(self, profile: StoredProfile) -> bool:
        self._reference.wrote()
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(sourcing_profiles).values(
                        name=profile.name,
                        version=profile.version,
                        document=profile.document,
                        changed_by=profile.changed_by,
                        created_at=profile.created_at,
                    )
                )
        except IntegrityError:
            return False
        return True

    def current_rules(self) -> StoredRuleSet | None:
        row = self._connection.execute(
            select(sourcing_rule_sets).order_by(sourcing_rule_sets.c.version.desc()).limit(1)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return StoredRuleSet(
            version=m["version"],
            default_profile=m["default_profile"],
            rules=list(m["rules"]),
            changed_by=m["changed_by"],
            created_at=m["created_at"],
        )

    def signature(self) -> Hashable:
        if self._reference.has_written:
            return object()  # what this unit of work wrote may roll back: equal to nothing
        return self._reference.signature(PROFILES)

    def add_rules(self, rule_set: StoredRuleSet) -> bool:
        self._reference.wrote()
        try:
            with self._connection.begin_nested():
                self._connection.execute(
                    insert(sourcing_rule_sets).values(
                        version=rule_set.version,
                        default_profile=rule_set.default_profile,
                        rules=rule_set.rules,
                        changed_by=rule_set.changed_by,
                        created_at=rule_set.created_at,
                    )
                )
        except IntegrityError:
            return False
        return True


def _profile(row: Any) -> StoredProfile:
    return StoredProfile(
        name=row["name"],
        version=row["version"],
        document=dict(row["document"]),
        changed_by=row["changed_by"],
        created_at=row["created_at"],
    )


_INSERT_DECISION = insert(sourcing_decisions).returning(sourcing_decisions.c.decision_id)
"""Built once: every capture stores its decision."""


class SqlSourcingDecisionRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, decision: StoredDecision) -> int:
        result = self._connection.execute(_INSERT_DECISION, _decision_row(decision))
        return int(result.scalar_one())

    def add_many(self, decisions: Sequence[StoredDecision]) -> list[int]:
        return insert_rows_returning_ids(
            self._connection,
            sourcing_decisions,
            [_decision_row(decision) for decision in decisions],
            id_column="decision_id",
        )

    def for_order(self, order_id: str) -> list[StoredDecision]:
        rows = self._connection.execute(
            select(sourcing_decisions)
            .where(sourcing_decisions.c.order_id == order_id)
            .order_by(sourcing_decisions.c.decision_id)
        )
        return [
            StoredDecision(
                decision_id=m["decision_id"],
                order_id=m["order_id"],
                trigger=m["trigger"],
                planner=m["planner"],
                cost=m["cost"],
                backordered_units=m["backordered_units"],
                plan=dict(m["plan"]),
                decided_at=m["decided_at"],
            )
            for m in (row._mapping for row in rows)
        ]


def _decision_row(decision: StoredDecision) -> dict[str, Any]:
    return {
        "order_id": decision.order_id,
        "trigger": decision.trigger,
        "planner": decision.planner,
        "cost": decision.cost,
        "backordered_units": decision.backordered_units,
        "plan": decision.plan,
        "decided_at": decision.decided_at,
    }


class SqlSourcingBidPriceRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def latest_id(self) -> int | None:
        found = self._connection.execute(
            select(func.max(sourcing_bid_prices.c.table_id))
        ).scalar_one_or_none()
        return None if found is None else int(found)

    def latest(self) -> StoredBidPrices | None:
        row = self._connection.execute(
            select(sourcing_bid_prices).order_by(sourcing_bid_prices.c.table_id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        m = row._mapping
        return StoredBidPrices(m["table_id"], m["computed_at"], dict(m["document"]))

    def replace(self, document: dict[str, Any], *, at: datetime) -> int:
        table_id = int(
            self._connection.execute(
                insert(sourcing_bid_prices)
                .values(computed_at=at, document=document)
                .returning(sourcing_bid_prices.c.table_id)
            ).scalar_one()
        )
        self._connection.execute(
            delete(sourcing_bid_prices).where(sourcing_bid_prices.c.table_id < table_id)
        )
        return table_id
