"""Jinja2 templates: customer emails (per message and language) and printable documents.

Email templates live in ``templates/email/<message>.<language>.txt.j2`` with two blocks,
``subject`` and ``body``. A language without a template falls back to English.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    UndefinedError,
    select_autoescape,
)

from oms.domain.notifications import DEFAULT_LANGUAGE
from oms.services.ports import RenderedEmail, TemplateProblem

MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
           "Oktober", "November", "Dezember"],
}  # fmt: skip


def format_money(amount: Any, currency: str, language: str = "en") -> str:
    """'1234.5', 'EUR' -> '1,234.50 EUR' (en) or '1.234,50 EUR' (de); exact, never float."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return f"{amount} {currency}"
    text = f"{value:,}"
    if language == "de":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return f"{text} {currency}"


def format_date(value: Any, language: str = "en") -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, date):
        return str(value)
    months = MONTHS.get(language, MONTHS["en"])
    if language == "de":
        return f"{value.day}. {months[value.month - 1]} {value.year}"
    return f"{value.day} {months[value.month - 1]} {value.year}"


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("oms.adapters", "templates"),
        undefined=StrictUndefined,
        # Emails are plain text (nothing to escape); documents are HTML and escaped.
        autoescape=select_autoescape(["html", "html.j2"]) if autoescape else False,  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = format_money
    env.filters["day"] = format_date
    return env


class JinjaEmailTemplates:
    def __init__(self) -> None:
        self._env = _environment(autoescape=False)

    def render(self, template: str, language: str, context: dict[str, Any]) -> RenderedEmail:
        used = language
        try:
            loaded = self._env.get_template(f"email/{template}.{language}.txt.j2")
        except TemplateNotFound:
            used = DEFAULT_LANGUAGE
            try:
                loaded = self._env.get_template(f"email/{template}.{used}.txt.j2")
            except TemplateNotFound:
                raise TemplateProblem(f"no email template '{template}'") from None
        values = {**context, "language": used}
        try:
            ctx = loaded.new_context(values)
            subject = "".join(loaded.blocks["subject"](ctx)).strip()
            body = "".join(loaded.blocks["body"](ctx)).strip() + "\n"
        except (UndefinedError, KeyError, TypeError, ValueError) as error:
            raise TemplateProblem(
                f"the event lacks what the '{template}' email needs: {error}"
            ) from None
        return RenderedEmail(subject=" ".join(subject.split()), body=body, language=used)


class JinjaDocumentRenderer:
    """Printable HTML documents (invoices, receipts); values are HTML-escaped."""

    def __init__(self) -> None:
        self._env = _environment(autoescape=True)

    def render(self, template: str, context: dict[str, Any]) -> str:
        return str(self._env.get_template(f"documents/{template}.html.j2").render(**context))
