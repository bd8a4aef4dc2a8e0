"""Sends webhook requests over HTTP (httpx); never follows redirects."""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from oms.services.ports import WebhookResponse

EXCERPT_CHARS = 500


class HttpWebhookSender:
    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False)

    def send(
        self, url: str, *, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> WebhookResponse:
        started = time.perf_counter()
        try:
            response = self._client.post(url, content=body, headers=dict(headers), timeout=timeout)
        except httpx.TimeoutException:
            return WebhookResponse(None, f"timed out after {timeout:g}s", _ms(started))
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
            return WebhookResponse(None, f"{type(error).__name__}: {error}", _ms(started))
        return WebhookResponse(
            status_code=response.status_code,
            error=None,
            duration_ms=_ms(started),
            body_excerpt=response.text[:EXCERPT_CHARS],
        )

    def close(self) -> None:
        self._client.close()


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
