"""The typed objects that travel through the inbound pipeline, one step to the next."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.inbound.dkim_verify import DkimResult

Classification = Literal["normal", "auto_reply", "bounce", "list", "loop"]
ThreadMethod = Literal["token", "headers", "subject", "none"]


@dataclass(frozen=True)
class Address:
    """A display name and a lower-cased address; name is "" when the mail gives none."""

    name: str
    address: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "address": self.address}


@dataclass
class AttachmentPart:
    """One attached or inline file, bytes included, as it came in the mail.

    content_type is what the bytes are (sniffed); declared_type is what the mail said, kept
    because a mismatch (an executable sent as text/plain) is worth showing.
    """

    filename: str
    content_type: str
    data: bytes
    sha256: str
    inline: bool = False
    content_id: str | None = None   # without angle brackets, for cid: references
    declared_type: str = ""

    @property
    def size(self) -> int:
        return len(self.data)

    def as_dict(self) -> dict[str, object]:
        """For `inspect`: declared_type only appears when the mail said something else."""
        out: dict[str, object] = {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "inline": self.inline,
        }
        if self.declared_type and self.declared_type != self.content_type:
            out["declared_type"] = self.declared_type
        return out


@dataclass
class ParsedMail:
    """What parsing found in the raw bytes; never raises, records defects instead."""

    from_: Address | None
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    subject: str
    message_id: str | None          # without angle brackets
    in_reply_to: list[str]          # without angle brackets
    references: list[str]           # without angle brackets, oldest first
    text: str                       # the whole body as text (HTML converted when no text part)
    html: str | None                # the raw HTML part, unsanitised; never shown as is
    attachments: list[AttachmentPart]
    headers: Message                # the parsed header block, for classification rules
    defects: list[str] = field(default_factory=list)
    html_safe: str | None = None    # html through sanitise_html (cid: images kept): for agents

    def header(self, name: str) -> str:
        """One header's decoded value, "" when absent or unreadable."""
        value = self.headers.get(name)
        return str(value).strip() if value is not None else ""


@dataclass
class ThreadMatch:
    """Which ticket a mail belongs to, and why."""

    method: ThreadMethod
    ticket_id: int | None = None
    reference: str | None = None    # "TKT-0042"
    detail: str = ""


Outcome = Literal["new_ticket", "comment", "ignored", "failed"]


@dataclass
class InboundMail:
    """One message on its way through the pipeline; each step reads and fills some fields."""

    raw: bytes
    mail_from: str = ""                         # the envelope sender
    rcpt_tos: list[str] = field(default_factory=list)
    inbound_id: int | None = None
    parsed: ParsedMail | None = None
    classification: Classification = "normal"
    rule_hits: list[str] = field(default_factory=list)
    workspace_id: int | None = None
    workspace_slug: str | None = None
    sender: Address | None = None               # who the ticket or reply is from
    original_sender: Address | None = None      # set for a forwarded customer mail
    thread: ThreadMatch = field(default_factory=lambda: ThreadMatch("none"))
    reply_text: str = ""
    known_sender: bool = False                  # From is the customer, a participant or an agent
    agent_id: int | None = None                 # set when From is one of the workspace's agents
    verified: bool = False                      # ... and the evidence says it really is
    hold_reason: str | None = None
    dkim: DkimResult | None = None              # every signature's verdict, stored with the row
    outcome: Outcome | None = None
    reason: str = ""
    ticket_id: int | None = None


class Stop(Exception):  # noqa: N818  (a control-flow signal, like Mailman's Discard)
    """Ends the pipeline early with an outcome, e.g. ignored: auto-reply."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
