"""Webhooks: which events a subscription wants, how a payload is signed, when to retry.

Signing follows the Standard Webhooks convention (https://www.standardwebhooks.com): the
secret is ``whsec_`` + base64 of random bytes; the signature is
``v1,`` + base64(HMAC-SHA256(secret bytes, "{webhook-id}.{webhook-timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from oms.domain.errors import Conflict, Invalid, NotFound

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SIGNATURE_VERSION = "v1"
_SEGMENT = re.compile(r"^[a-z0-9_]+$")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its first attempt."""
    RETRYING = "retrying"
    """Failed at least once; the next attempt is scheduled."""
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    """Failed as many times as allowed; waits for a replay."""


WAITING = frozenset({DeliveryStatus.PENDING, DeliveryStatus.RETRYING})


class SubscriptionNotFound(NotFound):
    slug = "webhook-subscription-not-found"
    title = "No such webhook subscription"


class DeliveryNotFound(NotFound):
    slug = "webhook-delivery-not-found"
    title = "No such webhook delivery"


class DeliveryAlreadyWaiting(Conflict):
    """A delivery that is still pending or retrying cannot be replayed: it will be sent anyway."""

    slug = "webhook-delivery-already-waiting"
    title = "The webhook delivery is already waiting to be sent"


class InvalidSubscription(Invalid):
    slug = "invalid-webhook-subscription"
    title = "The webhook subscription is not valid"


# -- event type filters ------------------------------------------------------------------------


def validate_event_type_pattern(pattern: str) -> str:
    """A pattern is dot-separated segments of ``[a-z0-9_]`` or ``*``; returns it stripped.

    ``*`` stands for exactly one segment, except as the last segment, where it stands for one
    or more: ``order.*`` matches ``order.created`` and ``order.line.status_changed``; ``*``
    alone matches every event.
    """
    pattern = pattern.strip()
    segments = pattern.split(".")
    if not pattern or any(s != "*" and not _SEGMENT.match(s) for s in segments):
        raise InvalidSubscription(
            f"'{pattern}' is not an event type pattern: use dot-separated lower-case words "
            "or '*' (e.g. 'order.*', 'order.created', '*')",
            errors=[{"pointer": "#/event_types", "detail": f"bad pattern '{pattern}'"}],
        )
    return pattern


def type_matches(pattern: str, event_type: str) -> bool:
    wanted = pattern.split(".")
    actual = event_type.split(".")
    for index, segment in enumerate(wanted):
        last = index == len(wanted) - 1
        if index >= len(actual):
            return False
        if segment == "*" and last:
            return True
        if segment not in ("*", actual[index]):
            return False
    return len(actual) == len(wanted)


def wants(patterns: Iterable[str], event_type: str) -> bool:
    return any(type_matches(pattern, event_type) for pattern in patterns)


def validate_patterns(patterns: Sequence[str]) -> list[str]:
    if not patterns:
        raise InvalidSubscription(
            "a subscription needs at least one event type pattern (use '*' for all events)",
            errors=[{"pointer": "#/event_types", "detail": "empty"}],
        )
    cleaned: list[str] = []
    for pattern in patterns:
        valid = validate_event_type_pattern(pattern)
        if valid not in cleaned:
            cleaned.append(valid)
    return cleaned


def validate_target_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSubscription(
            f"'{url}' is not an http(s) URL with a host",
            errors=[{"pointer": "#/url", "detail": "must be an absolute http or https URL"}],
        )
    if parts.username or parts.password:
        raise InvalidSubscription(
            "the URL must not carry credentials; the signature authenticates the OMS",
            errors=[{"pointer": "#/url", "detail": "credentials in URL"}],
        )
    return url


# -- signing -----------------------------------------------------------------------------------


def make_secret(random_bytes: bytes) -> str:
    if len(random_bytes) < 24:
        raise ValueError("a webhook secret needs at least 24 random bytes")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode()


def secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, *, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id=message_id, timestamp=timestamp, body=body),
    }


# -- retries -----------------------------------------------------------------------------------


def retry_delay(failed_attempts: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: ``base`` after the first failure, then doubling, ``cap`` at most."""
    if failed_attempts < 1:
        raise ValueError("retry_delay is for after a failed attempt")
    delay = base
    for _ in range(failed_attempts - 1):
        if delay >= cap:
            break
        delay *= 2
    return min(delay, cap)


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def after_failure(
    failed_attempts: int,
    *,
    max_attempts: int,
    at: datetime,
    base: timedelta,
    cap: timedelta,
) -> tuple[DeliveryStatus, datetime | None]:
    """The status and next attempt time of a delivery whose attempt number ``failed_attempts``
    (in the current round) has just failed."""
    if failed_attempts >= max_attempts:
        return DeliveryStatus.DEAD_LETTERED, None
    return DeliveryStatus.RETRYING, at + retry_delay(failed_attempts, base=base, cap=cap)
