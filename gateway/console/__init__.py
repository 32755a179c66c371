"""The ops console at ``/admin/ui``: login sessions, per-route figures, templates and assets.

The HTTP handlers are in :mod:`gateway.api.console`; this package holds what they use:
:mod:`gateway.console.session` (signed session cookies, CSRF tokens, logout),
:mod:`gateway.console.stats` (this replica's per-variant figures from its Prometheus metrics),
``templates/`` (Jinja2) and ``static/`` (the page's own JavaScript and CSS, no CDN).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR", "TEMPLATE_DIR"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
