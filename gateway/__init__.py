"""An OpenAI-compatible inference gateway with feature-flagged routing between variants.

Applications call a *route* name as their ``model``; per request a runtime *flag* sends the call
to the route's *candidate* variant (usually a fine-tuned model with a short prompt) or to its
*fallback* (a base model with a long prompt and few-shot examples). See ``docs/`` and the README.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
