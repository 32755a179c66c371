"""Evaluation: held-out evaluation of a route's variants through a running gateway, and more.

Modules (import them directly; nothing is re-exported here, so each stays independent):

* :mod:`gateway.evaluation.heldout`: examples, resumable state, the calls (``gateway eval``);
* :mod:`gateway.evaluation.report`: statistics, CI gates and the Markdown/JSON report (pure).
"""

from __future__ import annotations

__all__: list[str] = []
