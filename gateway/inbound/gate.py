"""Stops automatic mail here: an auto-reply, bounce, list mail or our own mail never acts.

RFC 3834 section 2: automatic responses must not be answered automatically. The message is
still recorded (with the ticket it refers to, when threading found one), never dropped silently.
"""

from __future__ import annotations

from gateway.inbound.context import Context
from gateway.inbound.mail import InboundMail, Stop


def gate(mail: InboundMail, ctx: Context) -> None:
    if mail.classification != "normal":
        hits = ", ".join(mail.rule_hits) or "classified"
        where = f" (refers to {mail.thread.reference})" if mail.thread.reference else ""
        raise Stop("ignored", f"{mail.classification}: {hits}{where}")
