"""Email by SMTP (the standard library's smtplib): one connection per message."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from oms.services.ports import EmailNotSent, OutgoingEmail


class SmtpEmailSender:
    def __init__(self, *, host: str, port: int, sender: str, timeout: float = 10) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._timeout = timeout

    def send(self, message: OutgoingEmail) -> None:
        email = EmailMessage()
        email["From"] = self._sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email["Message-ID"] = message.message_id
        email.set_content(message.body)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError) as error:
            raise EmailNotSent(
                f"SMTP {self._host}:{self._port} did not take the message: {error}"
            ) from error
