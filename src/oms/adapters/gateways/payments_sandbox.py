"""A sandbox payment gateway that behaves like a real one, deterministically by test token.

It keeps its own state in two tables (``sandbox_gateway_payments``, ``sandbox_gateway_requests``)
written on its OWN connection and committed at once, as a real gateway's state lives outside our
transactions: a capture that the gateway did stays done even if the caller rolls back.

On PostgreSQL these are tables of the OMS database. SQLite has one writer at a time, and the
caller's unit of work holds the write lock while it calls the gateway, so there the sandbox keeps
the same tables in a sibling file (``<database>-sandbox-gateway.db``, created on first use).
Either way its state is shared by every process using that database.

Magic tokens (anything else that starts ``tok_`` is a card that approves everything):

=====================  =========================================================================
``tok_decline``        authorisations are declined (``card_declined``)
``tok_insufficient``   authorisations are declined (``insufficient_funds``)
``tok_decline_capture`` authorisations approve, captures are declined (``capture_declined``)
``tok_timeout_once``   every new request is carried out, but its answer is lost: the caller gets
                       :class:`~oms.services.ports.GatewayTimeout`; a retry with the same
                       idempotency key gets the first result (the thing is done once)
``tok_timeout_always`` the gateway never answers and does nothing (it is down)
``tok_expired_auth``   the first authorisation on the token is issued already expired; later
                       ones (re-authorisations) live normally
``gc_<balance>``       a gift card holding ``<balance>`` (e.g. ``gc_50`` or ``gc_12.50``);
                       authorising more than what is left on it is declined
                       (``insufficient_funds``)
=====================  =========================================================================

Like a real gateway it refuses (declines) captures over what is open on the authorisation,
captures on a voided or expired authorisation (``authorisation_expired``), refunds over what is
left of a capture, and an idempotency key reused for a different request
(:class:`~oms.services.ports.GatewayKeyReused`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from oms.adapters.db.tables import sandbox_gateway_payments, sandbox_gateway_requests
from oms.domain.payments import Money
from oms.services.ports import Clock, GatewayKeyReused, GatewayResult, GatewayTimeout

CARD_AUTHORISATION_LIFETIME = timedelta(days=7)
GIFT_CARD_AUTHORISATION_LIFETIME = timedelta(days=30)


class MagicToken(StrEnum):
    """Card tokens with a scripted behaviour (see the module's documentation)."""

    DECLINE = "tok_decline"
    INSUFFICIENT = "tok_insufficient"
    DECLINE_CAPTURE = "tok_decline_capture"
    TIMEOUT_ONCE = "tok_timeout_once"
    TIMEOUT_ALWAYS = "tok_timeout_always"
    EXPIRED_AUTH = "tok_expired_auth"


_Handler = Callable[[Connection, dict[str, Any]], GatewayResult]


class SandboxGateway:
    name = "sandbox"

    def __init__(self, engine: Engine, *, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self._ready = False

    # -- the port ------------------------------------------------------------------------------

    def authorise(self, *, token: str, amount: Money, idempotency_key: str) -> GatewayResult:
        request = {"token": token, **_money_json(amount)}
        return self._request("authorise", idempotency_key, request, self._authorise, token)

    def capture(self, *, authorisation: str, amount: Money, idempotency_key: str) -> GatewayResult:
        request = {"authorisation": authorisation, **_money_json(amount)}
        token = self._token_of(authorisation)
        return self._request("capture", idempotency_key, request, self._capture, token)

    def void(
        self, *, authorisation: str, amount: Money | None, idempotency_key: str
    ) -> GatewayResult:
        request: dict[str, Any] = {"authorisation": authorisation}
        if amount is not None:
            request.update(_money_json(amount))
        token = self._token_of(authorisation)
        return self._request("void", idempotency_key, request, self._void, token)

    def refund(self, *, capture: str, amount: Money, idempotency_key: str) -> GatewayResult:
        request = {"capture": capture, **_money_json(amount)}
        token = self._token_of(capture)
        return self._request("refund", idempotency_key, request, self._refund, token)

    def records(self, *, kind: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
        """What the sandbox holds (its "merchant dashboard"), for tests and demos."""
        self.ensure_schema()
        p = sandbox_gateway_payments
        query = select(p).order_by(p.c.created_at, p.c.reference)
        if kind is not None:
            query = query.where(p.c.kind == kind)
        if token is not None:
            query = query.where(p.c.token == token)
        with self._engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # -- the machinery -------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create the sandbox's tables in its own SQLite file (PostgreSQL has them migrated)."""
        if self._ready:
            return
        if self._engine.dialect.name == "sqlite":
            sandbox_gateway_payments.metadata.create_all(
                self._engine,
                tables=[sandbox_gateway_payments, sandbox_gateway_requests],
                checkfirst=True,
            )
        self._ready = True

    def _token_of(self, reference: str) -> str:
        self.ensure_schema()
        with self._engine.connect() as connection:
            row = connection.execute(
                select(sandbox_gateway_payments.c.token).where(
                    sandbox_gateway_payments.c.reference == reference
                )
            ).first()
        return row[0] if row else ""

    def _request(
        self,
        operation: str,
        key: str,
        request: dict[str, Any],
        handler: _Handler,
        token: str,
    ) -> GatewayResult:
        self.ensure_schema()
        if token == MagicToken.TIMEOUT_ALWAYS:
            raise GatewayTimeout(f"sandbox: no answer to {operation} (token {token})")
        request_hash = hashlib.sha256(
            json.dumps([operation, request], sort_keys=True).encode()
        ).hexdigest()
        for _ in range(2):
            try:
                with self._engine.begin() as connection:
                    stored = connection.execute(
                        select(sandbox_gateway_requests).where(
                            sandbox_gateway_requests.c.idempotency_key == key
                        )
                    ).first()
                    if stored is not None:
                        if stored.request_hash != request_hash:
                            raise GatewayKeyReused(
                                f"idempotency key '{key}' was used for another request"
                            )
                        return _result(stored.result)
                    result = handler(connection, request)
                    connection.execute(
                        insert(sandbox_gateway_requests).values(
                            idempotency_key=key,
                            operation=operation,
                            request_hash=request_hash,
                            result=result.as_json(),
                            created_at=self._clock.now(),
                        )
                    )
            except IntegrityError:
                # a concurrent duplicate got there first: ours was rolled back, answer with theirs
                continue
            if token == MagicToken.TIMEOUT_ONCE:
                raise GatewayTimeout(f"sandbox: the answer to {operation} '{key}' was lost")
            return result
        raise GatewayTimeout(f"sandbox: {operation} '{key}' raced with a duplicate")

    def _new_reference(self, prefix: str) -> str:
        return f"sbx_{prefix}_{uuid.uuid4().hex[:20]}"

    def _authorise(self, connection: Connection, request: dict[str, Any]) -> GatewayResult:
        token: str = request["token"]
        amount = _money(request)
        now = self._clock.now()
        if not amount.is_positive():
            return _declined("invalid_amount", "the amount must be positive")
        lifetime = CARD_AUTHORISATION_LIFETIME
        if token.startswith("gc_"):
            if connection.dialect.name == "postgresql":  # one spender of a gift card at a time
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:token))"), {"token": token}
                )
            try:
                balance = Money.of(token[3:], amount.currency)
            except Exception:
                return _declined(
                    "invalid_token", f"'{token}' is not a gift card this sandbox knows"
                )
            if amount > balance - self._committed_on(connection, token, amount.currency):
                return _declined("insufficient_funds", "not enough left on the gift card")
            lifetime = GIFT_CARD_AUTHORISATION_LIFETIME
        elif not token.startswith("tok_"):
            return _declined("invalid_token", f"'{token}' is not a token this sandbox knows")
        elif token == MagicToken.DECLINE:
            return _declined("card_declined", "the card was declined")
        elif token == MagicToken.INSUFFICIENT:
            return _declined("insufficient_funds", "insufficient funds on the card")
        expires_at = now + lifetime
        if token == MagicToken.EXPIRED_AUTH and not self._has_authorisations(connection, token):
            expires_at = now
        reference = self._new_reference("auth")
        connection.execute(
            insert(sandbox_gateway_payments).values(
                reference=reference,
                kind="authorisation",
                parent_reference=None,
                token=token,
                currency=amount.currency,
                amount=amount.amount,
                captured=Decimal(0),
                refunded=Decimal(0),
                released=Decimal(0),
                expires_at=expires_at,
                created_at=now,
            )
        )
        return GatewayResult(True, reference, amount, expires_at=expires_at, message="authorised")

    def _committed_on(self, connection: Connection, token: str, currency: str) -> Money:
        """What a gift card has promised or paid out: open authorisations plus net captures."""
        p = sandbox_gateway_payments
        row = connection.execute(
            select(
                func.coalesce(func.sum(p.c.amount), 0),
                func.coalesce(func.sum(p.c.released), 0),
            ).where(p.c.token == token, p.c.kind == "authorisation")
        ).one()
        refunded = connection.execute(
            select(func.coalesce(func.sum(p.c.amount), 0)).where(
                p.c.token == token, p.c.kind == "refund"
            )
        ).scalar_one()
        held = Decimal(str(row[0])) - Decimal(str(row[1])) - Decimal(str(refunded))
        return Money(held.quantize(Money.zero(currency).amount), currency)

    def _has_authorisations(self, connection: Connection, token: str) -> bool:
        p = sandbox_gateway_payments
        return (
            connection.execute(
                select(p.c.reference).where(p.c.token == token, p.c.kind == "authorisation")
            ).first()
            is not None
        )

    def _load(self, connection: Connection, reference: str, kind: str) -> Any:
        """The row, locked until commit so that concurrent requests on it take turns."""
        query = select(sandbox_gateway_payments).where(
            sandbox_gateway_payments.c.reference == reference,
            sandbox_gateway_payments.c.kind == kind,
        )
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        return connection.execute(query).first()

    def _capture(self, connection: Connection, request: dict[str, Any]) -> GatewayResult:
        amount = _money(request)
        auth = self._load(connection, request["authorisation"], "authorisation")
        if auth is None:
            return _declined("unknown_authorisation", "no such authorisation")
        if auth.currency != amount.currency:
            return _declined("currency_mismatch", f"the authorisation is in {auth.currency}")
        if auth.token == MagicToken.DECLINE_CAPTURE:
            return _declined("capture_declined", "the issuer declined the capture")
        now = self._clock.now()
        if auth.expires_at is not None and now >= auth.expires_at:
            return _declined("authorisation_expired", "the authorisation has expired")
        open_amount = auth.amount - auth.captured - auth.released
        if not amount.is_positive() or amount.amount > open_amount:
            return _declined(
                "amount_exceeds_authorisation", f"only {open_amount} is open on the authorisation"
            )
        connection.execute(
            update(sandbox_gateway_payments)
            .where(sandbox_gateway_payments.c.reference == auth.reference)
            .values(captured=auth.captured + amount.amount)
        )
        reference = self._new_reference("cap")
        connection.execute(
            insert(sandbox_gateway_payments).values(
                reference=reference,
                kind="capture",
                parent_reference=auth.reference,
                token=auth.token,
                currency=amount.currency,
                amount=amount.amount,
                captured=Decimal(0),
                refunded=Decimal(0),
                released=Decimal(0),
                expires_at=None,
                created_at=now,
            )
        )
        return GatewayResult(True, reference, amount, message="captured")

    def _void(self, connection: Connection, request: dict[str, Any]) -> GatewayResult:
        auth = self._load(connection, request["authorisation"], "authorisation")
        if auth is None:
            return _declined("unknown_authorisation", "no such authorisation")
        open_amount: Decimal = auth.amount - auth.captured - auth.released
        amount = _money(request) if "amount" in request else Money(open_amount, auth.currency)
        if amount.currency != auth.currency:
            return _declined("currency_mismatch", f"the authorisation is in {auth.currency}")
        if amount.is_negative() or amount.amount > open_amount:
            return _declined("amount_exceeds_authorisation", f"only {open_amount} is open")
        connection.execute(
            update(sandbox_gateway_payments)
            .where(sandbox_gateway_payments.c.reference == auth.reference)
            .values(released=auth.released + amount.amount)
        )
        return GatewayResult(True, self._new_reference("void"), amount, message="voided")

    def _refund(self, connection: Connection, request: dict[str, Any]) -> GatewayResult:
        amount = _money(request)
        capture = self._load(connection, request["capture"], "capture")
        if capture is None:
            return _declined("unknown_capture", "no such capture")
        if capture.currency != amount.currency:
            return _declined("currency_mismatch", f"the capture is in {capture.currency}")
        left = capture.amount - capture.refunded
        if not amount.is_positive() or amount.amount > left:
            return _declined("amount_exceeds_capture", f"only {left} is left to refund")
        connection.execute(
            update(sandbox_gateway_payments)
            .where(sandbox_gateway_payments.c.reference == capture.reference)
            .values(refunded=capture.refunded + amount.amount)
        )
        reference = self._new_reference("ref")
        connection.execute(
            insert(sandbox_gateway_payments).values(
                reference=reference,
                kind="refund",
                parent_reference=capture.reference,
                token=capture.token,
                currency=amount.currency,
                amount=amount.amount,
                captured=Decimal(0),
                refunded=Decimal(0),
                released=Decimal(0),
                expires_at=None,
                created_at=self._clock.now(),
            )
        )
        return GatewayResult(True, reference, amount, message="refunded")


def _money_json(amount: Money) -> dict[str, str]:
    return {"amount": str(amount.amount), "currency": amount.currency}


def _money(request: dict[str, Any]) -> Money:
    try:
        return Money(Decimal(request["amount"]), request["currency"])
    except (InvalidOperation, KeyError) as error:
        raise ValueError(f"sandbox: malformed amount in {request}") from error


def _declined(code: str, message: str) -> GatewayResult:
    return GatewayResult(False, None, None, decline_code=code, message=message)


def _result(data: dict[str, Any]) -> GatewayResult:
    amount = Money(Decimal(data["amount"]), data["currency"]) if data.get("amount") else None
    expires_at = datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None
    return GatewayResult(
        approved=bool(data["approved"]),
        reference=data.get("reference"),
        amount=amount,
        expires_at=expires_at,
        decline_code=data.get("decline_code"),
        message=data.get("message") or "",
    )
