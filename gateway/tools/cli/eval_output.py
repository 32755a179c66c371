"""Where ``gateway eval``'s report goes: ``report.json`` and ``report.md``, then the terminal.

People get the summary table (tab-separated lines when piped), one PASS/FAIL line per gate and
the paths of the two files; ``--json`` prints the JSON report on stdout instead. Imported when
``gateway eval`` runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.tools.cli.common import print_json, print_table
from gateway.tools.evaluation.report import EvalReport, render_markdown, summary_rows

__all__ = ["failed_gates", "write_and_print"]


def _report_table(report: EvalReport) -> Table:
    c, f = report.candidate, report.fallback
    table = Table(title=Text(f"held-out evaluation: {report.meta['route']}"))
    table.add_column("metric")
    table.add_column(Text(f"candidate {c.variant}\n{c.model}"), justify="right")
    table.add_column(Text(f"fallback {f.variant}\n{f.model}"), justify="right")
    table.add_column("candidate − fallback", justify="right")
    for row in summary_rows(report):
        table.add_row(*(Text(cell) for cell in row))
    return table


def write_and_print(report: EvalReport, out: Path, as_json: bool) -> None:
    """Write ``out/report.json`` and ``out/report.md`` (creating ``out``), then print it."""
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    if as_json:
        print_json(data)
        return
    console = Console(highlight=False, soft_wrap=True)
    print_table(_report_table(report), console)
    for gate in report.gates:
        style = "green" if gate.passed else "bold red"
        console.print(
            Text(f"{'PASS' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}", style=style)
        )
    console.print(Text(f"reports: {out / 'report.md'}, {out / 'report.json'}"))


def failed_gates(report: EvalReport) -> list[str]:
    """``gate NAME failed: detail`` for each failed gate (the command reports them on stderr,
    also under ``--json``)."""
    return [f"gate {gate.name} failed: {gate.detail}" for gate in report.gates if not gate.passed]
