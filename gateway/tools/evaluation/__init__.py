"""Evaluation: held-out evaluation of a route's variants through a running gateway, and more.

Modules (import them directly; nothing is re-exported here, so each stays independent):

* held-out evaluation (``gateway eval``), the run: :mod:`~gateway.tools.evaluation.heldout_examples`
  (the held-out file), :mod:`~gateway.tools.evaluation.heldout_state` (results and the resumable
  state file), :mod:`~gateway.tools.evaluation.heldout_runner` (the calls, through the gateway) and
  :mod:`~gateway.tools.evaluation.heldout_errors` (what stops a run);
* held-out evaluation, the report (pure): :mod:`~gateway.tools.evaluation.report_stats` (intervals,
  percentiles), :mod:`~gateway.tools.evaluation.report_metrics` (per variant and the difference),
  :mod:`~gateway.tools.evaluation.report_gates` (CI gates), :mod:`~gateway.tools.evaluation.report`
  (the
  report, its table and Markdown) and :mod:`~gateway.tools.evaluation.report_text` (number formats);
* data and fine-tuning (``gateway dataset``, ``gateway finetune``): ``dataset*``, ``jsonl``,
  ``chat_example``, ``compact_index``, ``problems``, ``finetune_jobs``, ``watch*``,
  ``job_view``, ``registration``.
"""

from __future__ import annotations

__all__: list[str] = []
