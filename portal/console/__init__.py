"""The agents' console: server-rendered pages in the portal's app, behind a session login.

One module per page group; `routes` is what portal/app.py mounts.
"""

from __future__ import annotations

from portal.console import analytics, auth, dashboard, kb, notifications, settings, tickets

routes = [
    *auth.routes,
    *dashboard.routes,
    *tickets.routes,
    *notifications.routes,
    *kb.routes,
    *settings.routes,
    *analytics.routes,
]
