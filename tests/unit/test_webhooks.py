"""Webhook rules: event type patterns, Standard Webhooks signatures, backoff."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.domain.webhooks import (
    DeliveryStatus,
    InvalidSubscription,
    after_failure,
    make_secret,
    retry_delay,
    sign,
    signed_headers,
    type_matches,
    validate_patterns,
    validate_target_url,
)

words = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
event_types = st.lists(words, min_size=1, max_size=4).map(".".join)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.cancelled", False),
        ("order.*", "order.created", True),
        ("order.*", "order.line.status_changed", True),
        ("order.*", "order", False),
        ("order.*", "orders.created", False),
        ("order.*", "inventory.adjusted", False),
        ("*", "inventory.adjusted", True),
        ("*.created", "order.created", True),
        ("*.created", "order.line.created", False),
        ("order.*.status_changed", "order.line.status_changed", True),
        ("order.*.status_changed", "order.line.cancelled", False),
        ("order.line", "order.line.status_changed", False),
    ],
)
def test_type_patterns(pattern: str, event_type: str, expected: bool) -> None:
    assert type_matches(pattern, event_type) is expected


@given(event_types)
def test_every_type_matches_itself_and_the_catch_all(event_type: str) -> None:
    assert type_matches(event_type, event_type)
    assert type_matches("*", event_type)


@given(words, event_types)
def test_a_trailing_star_matches_everything_below_its_prefix(prefix: str, rest: str) -> None:
    assert type_matches(f"{prefix}.*", f"{prefix}.{rest}")
    assert not type_matches(f"{prefix}.*", prefix)


@pytest.mark.parametrize("pattern", ["", "Order.created", "order..created", "order.cre ated", "#"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidSubscription):
        validate_patterns([pattern])


def test_patterns_are_deduplicated_and_an_empty_list_is_refused() -> None:
    assert validate_patterns(["order.*", " order.* ", "*"]) == ["order.*", "*"]
    with pytest.raises(InvalidSubscription):
        validate_patterns([])


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "https://", "https://u:p@example.com/h"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidSubscription):
        validate_target_url(url)


def test_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    key = bytes(range(32))
    secret = make_secret(key)
    assert secret == "whsec_" + base64.b64encode(key).decode()
    body = b'{"type":"order.created"}'
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    headers = signed_headers(secret, message_id="evt-1", at=at, body=body)
    expected = base64.b64encode(
        hmac.new(key, b"evt-1.%d." % int(at.timestamp()) + body, hashlib.sha256).digest()
    ).decode()
    assert headers == {
        "webhook-id": "evt-1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": f"v1,{expected}",
    }
    assert sign(secret, message_id="evt-1", timestamp=1, body=body) != headers["webhook-signature"]


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification (and its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(
        secret, message_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=30), timedelta(minutes=5)
    delays = [retry_delay(n, base=base, cap=cap) for n in range(1, 7)]
    assert delays == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
        timedelta(minutes=5),
        timedelta(minutes=5),
    ]
    assert retry_delay(10_000, base=base, cap=cap) == cap


def test_the_last_allowed_failure_dead_letters() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    base, cap = timedelta(seconds=10), timedelta(hours=1)
    assert after_failure(1, max_attempts=3, at=at, base=base, cap=cap) == (
        DeliveryStatus.RETRYING,
        at + timedelta(seconds=10),
    )
    assert after_failure(2, max_attempts=3, at=at, base=base, cap=cap) == (
        DeliveryStatus.RETRYING,
        at + timedelta(seconds=20),
    )
    assert after_failure(3, max_attempts=3, at=at, base=base, cap=cap) == (
        DeliveryStatus.DEAD_LETTERED,
        None,
    )


@given(
    st.integers(min_value=1, max_value=200),
    st.integers(min_value=1, max_value=3600),
    st.integers(min_value=1, max_value=86_400),
)
def test_backoff_never_shrinks_and_never_passes_the_cap(
    failures: int, base_seconds: int, cap_seconds: int
) -> None:
    base, cap = timedelta(seconds=base_seconds), timedelta(seconds=cap_seconds)
    this = retry_delay(failures, base=base, cap=cap)
    following = retry_delay(failures + 1, base=base, cap=cap)
    assert this <= following <= cap
    # in whole seconds: base x 2**39 overflows timedelta long before the loop stops at the cap
    expected = timedelta(seconds=min(base_seconds * 2 ** (failures - 1), cap_seconds))
    assert this == expected
