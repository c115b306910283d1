"""The OpenAPI 3.1 descriptions of the JSON APIs, written by hand next to the code they describe.

Two documents for two audiences: the agents' API (`/api/agent/openapi.json`, Bearer key) and the
customers' public API (`/api/public/openapi.json`, no account: a tracking token or nothing).
tests/test_agent_api.py and tests/test_api_schema_fuzz.py check that every route is described
and every described path is routed; the fuzz test also runs schemathesis against both.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway.assignment import MODES
from portal.api_files import MAX_FILE_SIZE, MAX_FILES, allowed_types
from storage.models import PRIORITIES, TICKET_STATUSES


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict | None = None, code: str = "200") -> dict:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    return {code: answer, **_ERRORS}


_ERROR = {"description": "see `error`", "content": _json(_ref("Error"))}
_ERRORS = {"400": {**_ERROR, "description": "the body is not a JSON object, or a query "
                                           "parameter is malformed"},
           "401": {**_ERROR, "description": "missing or invalid API key"},
           "404": {**_ERROR, "description": "not found in the caller's workspace"},
           "422": {**_ERROR, "description": "a value is missing or invalid"}}
_TICKET_REF = {"name": "ref", "in": "path", "required": True, "example": "TKT-0001",
               "schema": {"type": "string"},
               "description": "the ticket reference, e.g. TKT-0042 (or just 42)"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False,
            "schema": schema or {"type": "string"}, "description": description}


def _obj(required: list[str] | None = None, **props: Any) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


_S, _B, _I, _N = ({"type": "string"}, {"type": "boolean"}, {"type": "integer"},
                  {"type": "number"})
_NS = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS = {
    "Error": _obj(["error"], error=_S),
    "Agent": _obj(id=_I, name=_S, email=_S, available=_B),
    "Attachment": _obj(id=_I, filename=_S, content_type=_S, size=_I, inline=_B,
                       url={"type": "string", "description": "GET it with the same key"}),
    "TicketSummary": _obj(
        reference=_S, subject=_S, status={"enum": list(TICKET_STATUSES)}, status_label=_S,
        priority={"enum": list(PRIORITIES)}, channel=_S, type=_S,
        sentiment={"type": "number", "description": "-1 (angry) to +1 (happy)"},
        assignee={"oneOf": [_ref("Agent"), {"type": "null"}]},
        customer=_obj(name=_S, email=_S), created_at=_TIME, updated_at=_TIME,
        resolved_at=_NTIME),
    "Comment": _obj(
        id=_I, author_kind={"enum": ["customer", "agent", "system", "unverified"]},
        author_name=_S, author_email=_S, agent_id={"type": ["integer", "null"]}, body=_S,
        internal=_B, held_reason=_NS, created_at=_TIME,
        attachments={"type": "array", "items": _ref("Attachment")}),
    "Ticket": {"allOf": [_ref("TicketSummary"), _obj(
        description=_S, resolution=_NS,
        participants={"type": "array", "items": _obj(name=_S, email=_S)},
        attachments={"type": "array", "items": _ref("Attachment"),
                     "description": "files that came with the request"},
        comments={"type": "array", "items": _ref("Comment"),
                  "description": "oldest first, internal notes included"},
        csat={"oneOf": [_obj(rating={"type": "integer", "minimum": 1, "maximum": 5},
                             comment=_NS), {"type": "null"}]})]},
    "TicketChange": _obj(
        status={"enum": list(TICKET_STATUSES)},
        resolution={"type": ["string", "null"], "description": "kept with the ticket; "
                    "shown in the resolved mail"},
        priority={"enum": list(PRIORITIES)},
        assignee={"description": "agent id, email, \"me\", or null to unassign",
                  "oneOf": [_I, _S, {"type": "null"}]}),
    "Notification": _obj(id=_I, kind=_S, text=_S, read=_B, ticket=_NS, created_at=_TIME),
    "Workspace": _obj(slug=_S, name=_S, brand_name=_NS, primary_color=_NS, logo_url=_NS,
                      support_email=_NS, assignment_mode={"enum": list(MODES)},
                      support_addresses={"type": "array", "items": _S}, portal_path=_S),
    "WorkspaceChange": _obj(name=_S, brand_name=_NS, primary_color=_NS, logo_url=_NS,
                            support_email=_NS, assignment_mode={"enum": list(MODES)}),
    "Article": _obj(id=_I, title=_S, body=_S, published=_B,
                    visibility={"enum": ["public", "workspace", "internal"]},
                    created_at=_TIME, updated_at=_TIME),
    "ArticleInput": _obj(title=_S, body=_S, published=_B,
                         visibility={"enum": ["public", "workspace", "internal"]}),
}

_CHANGE = {"requestBody": {"required": True, "content": _json(_ref("TicketChange"))},
           "responses": _ok("the ticket after the change; resolving queues the CSAT mail "
                            "once", _ref("Ticket"))}

PATHS = {
    "/api/agent/openapi.json": {"get": {
        "summary": "this description", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/api/agent/tickets": {"get": {
        "summary": "the queue, most urgent first (negative sentiment, then oldest)",
        "parameters": [
            _query("status", "comma-separated: " + ", ".join(TICKET_STATUSES)),
            _query("assignee", "me, none, an agent id or email"),
            _query("channel", "comma-separated: email, portal, imap, api"),
            _query("q", "text in subject, description, comments, customer, or a reference"),
            _query("limit", "at most 200 (default 50)", _I),
            _query("offset", "for paging", _I)],
        "responses": _ok("tickets", _obj(tickets={"type": "array",
                                                  "items": _ref("TicketSummary")},
                                         total=_I, limit=_I, offset=_I))}},
    "/api/agent/tickets/{ref}": {
        "parameters": [_TICKET_REF],
        "get": {"summary": "a ticket with its comments, files and CSAT rating",
                "responses": _ok("the ticket", _ref("Ticket"))},
        "patch": {"summary": "change status, resolution, priority and/or assignee", **_CHANGE}},
    "/api/agent/tickets/{ref}/status": {
        "parameters": [_TICKET_REF],
        "post": {"summary": "change status (with a resolution), and optionally priority and "
                           "assignee; same body as PATCH", **_CHANGE}},
    "/api/agent/tickets/{ref}/replies": {
        "parameters": [_TICKET_REF],
        "post": {
            "summary": "a public reply (mailed to the customer and participants, threaded, "
                       "with the tracking link) or an internal note (never mailed)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _obj(["body"], body=_S, internal=_B)},
                "multipart/form-data": {"schema": _obj(
                    body=_S, internal={"type": "string", "enum": ["true", "false"]},
                    files={"type": "array", "maxItems": MAX_FILES,
                           "items": {"type": "string", "format": "binary"},
                           "description": f"up to {MAX_FILES} files of "
                                          f"{MAX_FILE_SIZE // 2**20} MB; types: "
                                          + ", ".join(allowed_types())})}}},
            "responses": {**_ok("the new comment", _ref("Comment"), "201"),
                          "413": _ERROR, "415": {**_ERROR,
                                                 "description": "a file type not allowed"}}}},
    "/api/agent/tickets/{ref}/attachments/{id}": {
        "parameters": [_TICKET_REF, _ID],
        "get": {"summary": "a file of the ticket, as a download",
                "responses": {"200": {"description": "the bytes"}, **_ERRORS}}},
    "/api/agent/tickets/{ref}/comments/{id}/accept": {
        "parameters": [_TICKET_REF, _ID],
        "post": {"summary": "make a reply held for review the customer's public reply",
                 "responses": {**_ok("the comment", _obj(id=_I, internal=_B, author_kind=_S,
                                                          status=_S)),
                               "409": {**_ERROR, "description": "not a held reply"}}}},
    "/api/agent/notifications": {"get": {
        "summary": "the caller's notifications, newest first",
        "parameters": [_query("unread", "true: only unread"), _query("limit", "at most 200", _I)],
        "responses": _ok("notifications", _obj(notifications={
            "type": "array", "items": _ref("Notification")}, unread=_I))}},
    "/api/agent/notifications/{id}/read": {
        "parameters": [_ID],
        "post": {"summary": "mark one read", "responses": _ok("it", _ref("Notification"))}},
    "/api/agent/me": {"get": {"summary": "the calling agent",
                              "responses": _ok("the agent", _ref("Agent"))}},
    "/api/agent/me/availability": {"put": {
        "summary": "available or away (away agents are not auto-assigned)",
        "requestBody": {"required": True, "content": _json(_obj(["available"], available=_B))},
        "responses": _ok("the agent", _ref("Agent"))}},
    "/api/agent/workspace": {
        "get": {"summary": "white-label settings and support addresses",
                "responses": _ok("settings", _ref("Workspace"))},
        "patch": {"summary": "change settings; null or \"\" clears an optional field",
                  "requestBody": {"required": True, "content": _json(_ref("WorkspaceChange"))},
                  "responses": _ok("settings", _ref("Workspace"))}},
    "/api/agent/workspace/addresses": {"post": {
        "summary": "add a support address",
        "requestBody": {"required": True, "content": _json(_obj(["address"], address=_S))},
        "responses": {**_ok("settings", _ref("Workspace"), "201"),
                      "409": {**_ERROR, "description": "the address is taken"}}}},
    "/api/agent/workspace/addresses/{address}": {
        "parameters": [{"name": "address", "in": "path", "required": True, "schema": _S}],
        "delete": {"summary": "remove a support address (not the last one)",
                   "responses": {"204": {"description": "removed"}, **_ERRORS,
                                 "409": {**_ERROR, "description": "the last address"}}}},
    "/api/agent/kb": {
        "get": {"summary": "all knowledge-base articles, drafts included",
                "responses": _ok("articles", _obj(articles={"type": "array",
                                                            "items": _ref("Article")}))},
        "post": {"summary": "write an article",
                 "requestBody": {"required": True, "content": _json(_ref("ArticleInput"))},
                 "responses": {**_ok("the article", _ref("Article"), "201"),
                               "409": {**_ERROR, "description": "the title is taken"}}}},
    "/api/agent/kb/{id}": {
        "parameters": [_ID],
        "get": {"summary": "one article", "responses": _ok("the article", _ref("Article"))},
        "patch": {"summary": "change an article",
                  "requestBody": {"required": True, "content": _json(_ref("ArticleInput"))},
                  "responses": _ok("the article", _ref("Article"))},
        "delete": {"summary": "delete an article",
                   "responses": {"204": {"description": "deleted"}, **_ERRORS}}},
}


@cache
def openapi() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Workestra agents' API", "version": "1",
                 "description": "Every path needs `Authorization: Bearer KEY` (from `workestra "
                                "agents add`) except this description. Errors are JSON "
                                "`{\"error\": ...}`; another workspace's rows answer 404."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": SCHEMAS},
        "paths": PATHS,
    }


# -- the customers' public API ------------------------------------------------------------------

_SLUG = {"type": "string", "description": "the workspace, as in /portal/SLUG/submit",
         "example": "acme"}
_SESSION = {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$",
            "description": "a random id the submit form makes; names no person"}
_LIMITED = {**_ERROR, "description": "too many requests from this address; try again later"}
_FILE = _obj(filename=_S, content_type=_S, size=_I)

PUBLIC_SCHEMAS = {
    "Error": SCHEMAS["Error"],
    "PublicTicket": _obj(
        reference=_S, subject=_S, status={"enum": list(TICKET_STATUSES)}, status_label=_S,
        type=_S, created_at=_TIME, updated_at=_TIME,
        resolution={"type": ["string", "null"], "description": "once resolved or closed"},
        resolved_at=_NTIME,
        messages={"type": "array", "description": "the request, then public replies, oldest "
                  "first; internal notes never", "items": _obj(
                      author=_S, kind={"type": "string", "description": "customer, agent or "
                                       "system"},
                      body=_S, created_at=_TIME,
                      attachments={"type": "array", "items": _FILE})}),
    "Upload": _obj(["upload", "filename", "size", "content_type"],
                   upload={"type": "string", "description": "send it with the submit form "
                           "(field `uploads`) within 24 hours"},
                   filename=_S, size=_I, content_type=_S),
    "Suggestion": _obj(id=_I, title=_S, snippet=_S,
                       url={"type": "string", "description": "the article's portal page; "
                            "opening it counts as a click for the session"}),
}

PUBLIC_PATHS = {
    "/api/public/openapi.json": {"get": {
        "summary": "this description", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    "/api/public/tickets": {"get": {
        "summary": "the tracking page's data, for the holder of a tracking link",
        "parameters": [{"name": "t", "in": "query", "required": True, "schema": _S,
                        "description": "the token of the tracking link (`?t=` in the mail)"}],
        "responses": {"200": {"description": "the ticket as its customer sees it",
                              "content": _json(_ref("PublicTicket"))},
                      "404": {**_ERROR, "description": "the link is not valid or has expired "
                                                      "(the same answer for any ticket)"}}}},
    "/api/public/upload": {"post": {
        "summary": "upload one file ahead of the submit form; the answer is a token for it",
        "requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": _obj(["slug", "file"], slug=_SLUG, file={
                "type": "string", "format": "binary",
                "description": f"at most {MAX_FILE_SIZE // 2**20} MB; types: "
                               + ", ".join(allowed_types())})}}},
        "responses": {"201": {"description": "stored", "content": _json(_ref("Upload"))},
                      "400": {**_ERROR, "description": "no file, or the form cannot be read"},
                      "404": {**_ERROR, "description": "no such workspace"},
                      "413": {**_ERROR, "description": "the file or the request is too large"},
                      "415": {**_ERROR, "description": "a type that is not accepted"},
                      "429": _LIMITED,
                      "503": {**_ERROR, "description": "the virus scanner is unavailable"}}}},
    "/api/public/kb/search": {"get": {
        "summary": "up to 5 published articles for what the customer is typing",
        "parameters": [
            {"name": "slug", "in": "query", "required": True, "schema": _SLUG},
            _query("q", "the subject typed so far (first 200 characters count)"),
            {"name": "session", "in": "query", "required": False, "schema": _SESSION,
             "description": "logs the articles as shown for this session"}],
        "responses": {"200": {"description": "best first; none for a query without words",
                              "content": _json(_obj(articles={
                                  "type": "array", "maxItems": 5,
                                  "items": _ref("Suggestion")}))},
                      "404": {**_ERROR, "description": "no such workspace"},
                      "429": _LIMITED}}},
    "/api/public/kb/events": {"post": {
        "summary": "report that the customer dismissed the suggestions or opened one",
        "requestBody": {"required": True, "content": _json(_obj(
            ["slug", "session", "event"], slug=_SLUG, session=_SESSION,
            event={"enum": ["dismissed", "clicked"]},
            article_id={"type": "integer", "description": "the article, for a click"}))},
        "responses": {"204": {"description": "logged (an unknown article is ignored)"},
                      "400": {**_ERROR, "description": "not JSON, or not a known event with "
                                                      "a session"},
                      "404": {**_ERROR, "description": "no such workspace"}}}},
}


@cache
def public_openapi() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Workestra public (customer) API", "version": "1",
                 "description": "No account or key: a ticket is read with the token of its "
                                "tracking link. Errors are JSON `{\"error\": ...}`. Uploads and "
                                "searches are rate-limited per client address (429)."},
        "servers": [{"url": "/"}],
        "components": {"schemas": PUBLIC_SCHEMAS},
        "paths": PUBLIC_PATHS,
    }
