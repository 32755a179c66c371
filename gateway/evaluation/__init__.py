"""Evaluation: held-out evaluation of a route's variants through a running gateway, and more.

Modules (import them directly; nothing is re-exported here, so each stays independent):

* held-out evaluation (``gateway eval``), the run: :mod:`~gateway.evaluation.heldout_examples`
  (the held-out file), :mod:`~gateway.evaluation.heldout_state` (results and the resumable
  state file), :mod:`~gateway.evaluation.heldout_runner` (the calls, through the gateway) and
  :mod:`~gateway.evaluation.heldout_errors` (what stops a run);
* held-out evaluation, the report (pure): :mod:`~gateway.evaluation.report_stats` (intervals,
  percentiles), :mod:`~gateway.evaluation.report_metrics` (per variant and the difference),
  :mod:`~gateway.evaluation.report_gates` (CI gates), :mod:`~gateway.evaluation.report` (the
  report, its table and Markdown) and :mod:`~gateway.evaluation.report_text` (number formats);
* data and fine-tuning (``gateway dataset``, ``gateway finetune``): ``dataset*``, ``jsonl``,
  ``chat_example``, ``compact_index``, ``problems``, ``finetune_jobs``, ``watch*``,
  ``job_view``, ``registration``.
"""

from __future__ import annotations

__all__: list[str] = []
