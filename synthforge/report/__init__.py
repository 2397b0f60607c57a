"""``report.json`` (versioned, machine-readable) and a self-contained ``report.html``.

The HTML has no scripts, fonts or images from anywhere: every plot is inline SVG,
so the file opens offline and makes no network request.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthforge.checks.base import CheckResult
from synthforge.data.schema import Schema, present_values

REPORT_SCHEMA_VERSION = 1
_MAX_PLOT_ROWS = 50_000
_BINS = 30
_TOP_CATEGORIES = 12
REAL_COLOUR, SYNTHETIC_COLOUR = "#2b6cb0", "#dd6b20"


def build_report(*, info: dict[str, Any], train: pl.DataFrame, holdout: pl.DataFrame | None,
                 synthetic: pl.DataFrame, schema: Schema, checks: list[CheckResult]) -> dict[str, Any]:
    real = train.sample(min(train.height, _MAX_PLOT_ROWS), seed=0) if train.height > _MAX_PLOT_ROWS else train
    fake = synthetic.sample(min(synthetic.height, _MAX_PLOT_ROWS), seed=0) if synthetic.height > _MAX_PLOT_ROWS \
        else synthetic
    columns = [_column_summary(real, fake, spec.name, spec.kind.numeric) for spec in schema.learned
               if spec.name in fake.columns]
    numeric = [s.name for s in schema.learned if s.kind.numeric and s.name in fake.columns]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run": info,
        "passed": all(c.passed or c.on_fail == "warn" for c in checks),
        "checks": [c.as_dict() for c in checks],
        "columns": columns,
        "correlations": {
            "columns": numeric,
            "real": _correlation(real, numeric),
            "synthetic": _correlation(fake, numeric),
        },
        "rows": {"train": train.height, "holdout": holdout.height if holdout is not None else 0,
                 "synthetic_checked": synthetic.height},
    }


def write_reports(directory: Path, **parts: Any) -> dict[str, Any]:
    report = build_report(**parts)
    (directory / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (directory / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def _column_summary(real: pl.DataFrame, fake: pl.DataFrame, name: str, numeric: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "name": name,
        "numeric": numeric,
        "null_rate": {"real": real.get_column(name).null_count() / max(real.height, 1),
                      "synthetic": fake.get_column(name).null_count() / max(fake.height, 1)},
    }
    if numeric:
        a, b = present_values(real.get_column(name)), present_values(fake.get_column(name))
        both = np.concatenate([a, b])
        edges = np.histogram_bin_edges(both, bins=_BINS) if len(both) else np.array([0.0, 1.0])
        summary["edges"] = edges.tolist()
        summary["real"] = (np.histogram(a, edges)[0] / max(len(a), 1)).tolist()
        summary["synthetic"] = (np.histogram(b, edges)[0] / max(len(b), 1)).tolist()
    else:
        real_counts = real.get_column(name).cast(pl.String).fill_null("(null)").value_counts(sort=True, name="n")
        top = real_counts.get_column(name).head(_TOP_CATEGORIES).to_list()
        fake_counts = dict(fake.get_column(name).cast(pl.String).fill_null("(null)").value_counts(name="n").iter_rows())
        real_map = dict(real_counts.iter_rows())
        summary["categories"] = top
        summary["real"] = [real_map.get(c, 0) / max(real.height, 1) for c in top]
        summary["synthetic"] = [fake_counts.get(c, 0) / max(fake.height, 1) for c in top]
    return summary


def _correlation(frame: pl.DataFrame, columns: list[str]) -> list[list[float]]:
    if len(columns) < 2:
        return []
    matrix = np.column_stack([
        present_values(frame.get_column(c).fill_null(strategy="mean") if not frame.get_column(c).dtype.is_temporal()
                else frame.get_column(c).fill_null(strategy="forward").fill_null(strategy="backward"))
        for c in columns
    ])
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.corrcoef(matrix, rowvar=False)
    return np.round(np.nan_to_num(correlation), 4).tolist()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# --- HTML -----------------------------------------------------------------------------


def render_html(report: dict[str, Any]) -> str:
    run = report["run"]
    title = f"SynthForge report — {html.escape(str(run.get('recipe', 'evaluation')))}"
    verdict = "passed" if report["passed"] else "FAILED"
    body = [
        f"<h1>{title}</h1>",
        f"<p class='verdict {'ok' if report['passed'] else 'bad'}'>Gates {verdict}</p>",
        _checks_table(report["checks"]),
        "<h2>Columns: real vs synthetic</h2>",
        f"<p class='legend'><span style='color:{REAL_COLOUR}'>■ real (training)</span> "
        f"<span style='color:{SYNTHETIC_COLOUR}'>■ synthetic</span></p>",
        "<div class='grid'>" + "".join(_column_plot(c) for c in report["columns"]) + "</div>",
    ]
    correlations = report.get("correlations", {})
    if correlations.get("real"):
        body += ["<h2>Correlations of numeric columns</h2>", _heatmaps(correlations)]
    body += _check_sections(report["checks"])
    body += ["<h2>Run</h2>", _run_table(run)]
    return _PAGE.format(title=title, body="\n".join(body))


def _check_sections(checks: list[dict[str, Any]]) -> list[str]:
    """Plots and tables that some checks' details carry: the DCR distributions, ML efficacy."""
    sections = []
    for check in checks:
        details = check["details"]
        if "dcr_histogram" in details:
            histogram = details["dcr_histogram"]
            sections.append(
                "<h2>Distance to closest training row</h2><p class='legend'>"
                f"<span style='color:{REAL_COLOUR}'>■ holdout rows</span> "
                f"<span style='color:{SYNTHETIC_COLOUR}'>■ synthetic rows</span>: a synthetic distribution shifted "
                "towards 0 means rows copied or nearly copied from training.</p>"
                + _column_plot({"name": "DCR", "numeric": True, "edges": histogram["edges"],
                                "real": histogram["holdout"], "synthetic": histogram["synthetic"],
                                "null_rate": {"real": 0, "synthetic": 0}}, width=600, height=160))
        if check["name"] == "ml_efficacy" and details.get("synthetic") is not None:
            sections.append(
                f"<h2>ML efficacy</h2><table><tr><th>predicting</th><th>metric</th><th>trained on synthetic</th>"
                f"<th>trained on real</th></tr><tr><td>{html.escape(str(details['target']))}</td>"
                f"<td>{details['metric']}</td><td>{details['synthetic']:.4f}</td><td>{details['real']:.4f}</td>"
                "</tr></table><p>Both models are tested on the real holdout.</p>")
    return sections


def _checks_table(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        state = "pass" if c["passed"] else ("fail" if c["on_fail"] == "error" else "warn")
        score = "n/a" if c["score"] is None else f"{c['score']:.4f}"
        gate = CheckResult(**{k: c[k] for k in CheckResult.__dataclass_fields__}).gate
        rows.append(f"<tr class='{state}'><td>{html.escape(c['name'])}</td><td>{c['kind']}</td><td>{score}</td>"
                    f"<td>{html.escape(gate)}</td><td>{state}</td><td>{html.escape(c['summary'])}</td></tr>")
    return ("<h2>Checks</h2><table><tr><th>check</th><th>kind</th><th>score</th><th>gate</th><th>result</th>"
            "<th>summary</th></tr>" + "".join(rows) + "</table>")


def _column_plot(column: dict[str, Any], width: int = 300, height: int = 140) -> str:
    real, fake = column["real"], column["synthetic"]
    n = len(real)
    top = max([*real, *fake, 1e-9])
    bar = width / max(n, 1)
    shapes = []
    for i, (a, b) in enumerate(zip(real, fake, strict=True)):
        for offset, value, colour in ((0.0, a, REAL_COLOUR), (0.5, b, SYNTHETIC_COLOUR)):
            h = value / top * (height - 20)
            shapes.append(f"<rect x='{i * bar + offset * bar:.1f}' y='{height - h:.1f}' width='{bar / 2:.1f}' "
                          f"height='{h:.1f}' fill='{colour}'/>")
    if column["numeric"]:
        edges = column["edges"]
        label = f"{edges[0]:,.4g} … {edges[-1]:,.4g}"
    else:
        label = ", ".join(map(str, column["categories"][:4])) + (" …" if len(column["categories"]) > 4 else "")
    nulls = column["null_rate"]
    null_text = (f" · nulls {nulls['real']:.1%} / {nulls['synthetic']:.1%}"
                 if nulls["real"] or nulls["synthetic"] else "")
    return (f"<figure><figcaption>{html.escape(column['name'])}{null_text}</figcaption>"
            f"<svg width='{width}' height='{height}' role='img'>{''.join(shapes)}</svg>"
            f"<div class='axis'>{html.escape(label)}</div></figure>")


def _heatmaps(correlations: dict[str, Any]) -> str:
    real = np.asarray(correlations["real"])
    fake = np.asarray(correlations["synthetic"])
    names = correlations["columns"]
    return "<div class='grid'>" + "".join(
        _heatmap(matrix, names, title) for matrix, title in
        ((real, "real"), (fake, "synthetic"), (fake - real, "difference (synthetic − real)"))
    ) + "</div>"


def _heatmap(matrix: np.ndarray, names: list[str], title: str, cell: int = 26) -> str:
    n = len(names)
    label = 110
    cells = []
    for i in range(n):
        cells.append(f"<text x='{label - 4}' y='{label + i * cell + cell * 0.65:.0f}' text-anchor='end' "
                     f"font-size='10'>{html.escape(names[i][:16])}</text>")
        for j in range(n):
            value = float(matrix[i, j])
            fade = int(255 * (1 - min(abs(value), 1.0)))
            colour = f"rgb(255,{fade},{fade})" if value >= 0 else f"rgb({fade},{fade},255)"
            cells.append(f"<rect x='{label + j * cell}' y='{label + i * cell}' width='{cell}' height='{cell}' "
                         f"fill='{colour}'><title>{html.escape(names[i])} × {html.escape(names[j])}: "
                         f"{value:.3f}</title></rect>")
    for j in range(n):
        x = label + j * cell + cell * 0.6
        cells.append(f"<text x='{x:.0f}' y='{label - 4}' font-size='10' transform='rotate(-60 {x:.0f} {label - 4})'>"
                     f"{html.escape(names[j][:16])}</text>")
    size = label + n * cell + 4
    return (f"<figure><figcaption>{html.escape(title)}</figcaption>"
            f"<svg width='{size}' height='{size}' role='img'>{''.join(cells)}</svg></figure>")


def _run_table(run: dict[str, Any]) -> str:
    rows = []
    for key, value in run.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        rows.append(f"<tr><th>{html.escape(key)}</th><td><code>{html.escape(text)}</code></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1a202c; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #cbd5e0; padding: 4px 8px;
 text-align: left; vertical-align: top; font-size: 14px; }}
tr.pass td:nth-child(5) {{ color: #2f855a; }} tr.fail td {{ background: #fed7d7; }}
tr.warn td {{ background: #fefcbf; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }} .ok {{ color: #2f855a; }} .bad {{ color: #c53030; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }} figure {{ margin: 0; }} figcaption {{ font-weight: 600; }}
.axis {{ font-size: 11px; color: #4a5568; }} code {{ font-size: 12px; word-break: break-all; }}
</style></head><body>
{body}
</body></html>
"""
