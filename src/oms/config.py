"""Settings, read from environment variables prefixed ``OMS_``.

Nothing here opens a connection: :mod:`oms.bootstrap` turns settings into an engine and services.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Directory for the embedded SQLite database (created on first use).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means an SQLite file 'oms.db' in the data directory. "
        "postgresql://... URLs use psycopg 3.",
    )
    nats_url: str | None = Field(
        default=None, description="NATS server, e.g. nats://127.0.0.1:4222; unset disables it."
    )
    nats_stream: str = Field(default="OMS", description="JetStream stream holding OMS events.")
    nats_subject_prefix: str = Field(default="oms", description="Events go to <prefix>.<type>.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: LogLevel = "INFO"
    event_source: str = Field(
        default="/oms", description="CloudEvents 'source' attribute of every event."
    )
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    relay_batch_size: int = Field(default=100, ge=1, le=10_000)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    # --- events: relay and webhooks ---
    nats_duplicate_window_seconds: float = Field(
        default=600,
        gt=0,
        description="JetStream de-duplication window of a stream the relay creates: a relay "
        "restarted within it never publishes an event twice.",
    )
    relay_publish_delay_seconds: float = Field(
        default=0, ge=0, description="Test hook: pause after each published event."
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(
        default=30, gt=0, description="Wait after the first failure; doubles after each."
    )
    webhook_retry_max_seconds: float = Field(default=6 * 3600, gt=0)
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=300)
    webhook_batch_size: int = Field(default=50, ge=1, le=1000)
    webhook_concurrency: int = Field(default=8, ge=1, le=64)

    # payments
    payment_gateway: Literal["sandbox"] = Field(
        default="sandbox", description="Payment gateway adapter (only the sandbox ships so far)."
    )
    sandbox_gateway_database_url: str | None = Field(
        default=None,
        description="Where the sandbox gateway keeps its state; unset means the OMS database "
        "on PostgreSQL, or a sibling file '<name>-sandbox-gateway.db' next to an SQLite file.",
    )
    payment_capture_order: Literal["gift_card_first", "gift_card_last"] = "gift_card_first"
    payment_refund_order: Literal["gift_card_first", "gift_card_last"] = "gift_card_last"
    payment_retry_attempts: int = Field(default=3, ge=1, le=10)
    payment_retry_backoff_seconds: float = Field(default=0.1, ge=0)

    # invoices and receipts: the seller printed on every document
    seller_name: str = Field(default="OMS Retail", description="Seller on invoices and receipts.")
    seller_address: str = Field(default="1 Commerce Way, Springfield", description="One line.")
    seller_tax_id: str = Field(default="", description="VAT / sales tax number; empty omits it.")
    seller_email: str = Field(default="orders@example.com", description="Contact on documents.")

    def seller(self) -> dict[str, str]:
        """The seller block of an invoice (empty values left out)."""
        found = {
            "name": self.seller_name,
            "address": self.seller_address,
            "tax_id": self.seller_tax_id,
            "email": self.seller_email,
        }
        return {key: value for key, value in found.items() if value.strip()}

    # notifications (email by SMTP)
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for customer email.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = Field(default="Orders <orders@example.com>", description="From: header.")
    smtp_timeout_seconds: float = Field(default=10, gt=0)
    care_email: str | None = Field(
        default=None, description="Customer-care mailbox told about payment problems."
    )
    notification_max_attempts: int = Field(default=8, ge=1)
    notification_retry_seconds: float = Field(
        default=60, gt=0, description="First retry delay after an SMTP failure; doubles each time."
    )

    # customer care and returns
    return_window_days: int = Field(
        default=30, ge=0, le=3650, description="Days after delivery a return may be authorised."
    )
    care_agent_appeasement_limit: Decimal = Field(
        default=Decimal("50.00"),
        ge=0,
        description="The most a care agent may appease per appeasement without a supervisor's "
        "approval, in the order's currency (admins are unlimited).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def resolved_database_url(self) -> str:
        """The database URL to use, with the driver spelled out for SQLAlchemy."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'oms.db').resolve()}"


def normalise_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
