"""HTML reports that open from disk: ``report.html`` of ``tvau analyze`` and ``eval/report.html`` of
``tvau validate``/``tvau test``. The static parts (template, CSS, JS) are package data under ``assets/``."""

from tvau_lightning.report.analyze_report import (
    AnalyzeReport,
    ReportTrack,
    write_analyze_report,
    write_report,
)
from tvau_lightning.report.eval_report import write_eval_report

__all__ = ["AnalyzeReport", "ReportTrack", "write_analyze_report", "write_eval_report", "write_report"]
