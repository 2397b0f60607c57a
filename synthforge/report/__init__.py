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
        "warnings": [c.name for c in checks if not c.passed and c.on_fail == "warn"],
        "checks": [c.as_dict() for c in checks],
        "columns": columns,
        "profile": [{"column": c.name, "kind": c.kind.value, "nulls": c.null_rate, "distinct": c.n_unique,
                     "format": c.format, "note": c.note} for c in schema.columns],
        "constraints": [rule.describe() for rule in schema.constraints],
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


def build_database_report(*, info: dict[str, Any], database: Any, checks: list[CheckResult]) -> dict[str, Any]:
    """One report for related tables: the relational checks, cardinality per relationship, each table's report."""
    from synthforge.checks.relational import cardinality_scores

    tables = {}
    for name, schema in database.schemas.items():
        own = [c for c in checks if c.name.endswith(f"[{name}]")]
        keys = set(database.relations.keys(name))
        learned = Schema(columns=[c for c in schema.columns if c.name not in keys], constraints=schema.constraints)
        tables[name] = build_report(info=info, train=database.train[name],
                                    holdout=(database.holdout or {}).get(name), synthetic=database.synthetic[name],
                                    schema=learned, checks=own)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run": info,
        "passed": all(c.passed or c.on_fail == "warn" for c in checks),
        "warnings": [c.name for c in checks if not c.passed and c.on_fail == "warn"],
        "checks": [c.as_dict() for c in checks if not c.name.endswith("]")],
        "relationships": [{"relationship": name, **scores} for name, scores in cardinality_scores(database).items()],
        "tables": tables,
    }


def write_database_reports(directory: Path, **parts: Any) -> dict[str, Any]:
    report = build_database_report(**parts)
    (directory / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (directory / "report.html").write_text(render_database_html(report), encoding="utf-8")
    return report


def render_database_html(report: dict[str, Any]) -> str:
    run = report["run"]
    title = f"SynthForge report — {html.escape(str(run.get('recipe', 'evaluation')))}"
    verdict = "passed" if report["passed"] else "FAILED"
    names = ", ".join(f"<a href='#table-{html.escape(n)}'>{html.escape(n)}</a>" for n in report["tables"])
    body = [f"<h1>{title}</h1>", f"<p class='verdict {'ok' if report['passed'] else 'bad'}'>Gates {verdict}</p>",
            _privacy_off(run), f"<p>Tables: {names}</p>", "<h2>The dataset as a whole</h2>",
            _checks_table(report["checks"]), "<h2>Relationships: child rows per parent row</h2>",
            f"<p class='legend'><span style='color:{REAL_COLOUR}'>■ real (training)</span> "
            f"<span style='color:{SYNTHETIC_COLOUR}'>■ synthetic</span>; the last bar holds every count at or above "
            f"the real 99th percentile.</p>",
            "<div class='grid'>" + "".join(
                _column_plot({"name": f"{r['relationship']} (mean {r['mean']['real']:.2f} real, "
                                      f"{r['mean']['synthetic']:.2f} synthetic; score {r['score']:.3f})",
                              "numeric": True, "edges": r["edges"], "real": r["real"], "synthetic": r["synthetic"],
                              "null_rate": {"real": 0, "synthetic": 0}}, width=420)
                for r in report["relationships"]) + "</div>"]
    for name, table in report["tables"].items():
        body += [f"<h2 id='table-{html.escape(name)}'>Table {html.escape(name)}</h2>", _checks_table(table["checks"]),
                 "<div class='grid'>" + "".join(_column_plot(c) for c in table["columns"]) + "</div>"]
        body += _check_sections(table["checks"])
        body.append(_profile_table(table.get("profile", [])))
    body += ["<h2>Run</h2>", _run_table(run)]
    return _PAGE.format(title=title, body="\n".join(body))


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
        real_counts = (real.get_column(name).cast(pl.String).fill_null("(null)").alias("value")
                       .value_counts(sort=True, name="n"))
        top = real_counts.get_column("value").head(_TOP_CATEGORIES).to_list()
        fake_counts = dict(fake.get_column(name).cast(pl.String).fill_null("(null)").alias("value")
                           .value_counts(name="n").iter_rows())
        real_map = dict(real_counts.iter_rows())
        summary["categories"] = top
        summary["real"] = [real_map.get(c, 0) / max(real.height, 1) for c in top]
        summary["synthetic"] = [fake_counts.get(c, 0) / max(fake.height, 1) for c in top]
    return summary


def _correlation(frame: pl.DataFrame, columns: list[str]) -> list[list[float]]:
    if len(columns) < 2:
        return []
    matrix = np.column_stack([
        # a column null in every row has no mean: it stays 0, and its correlations 0
        present_values(frame.get_column(c).fill_null(strategy="mean").fill_null(0)
                       if not frame.get_column(c).dtype.is_temporal()
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
        _privacy_off(run),
        _privacy_budget(run),
        _checks_table(report["checks"], private=bool(run.get("differential_privacy"))),
        "<h2>Columns: real vs synthetic</h2>",
        f"<p class='legend'><span style='color:{REAL_COLOUR}'>■ real (training)</span> "
        f"<span style='color:{SYNTHETIC_COLOUR}'>■ synthetic</span></p>",
        "<div class='grid'>" + "".join(_column_plot(c) for c in report["columns"]) + "</div>",
    ]
    correlations = report.get("correlations", {})
    if correlations.get("real"):
        body += ["<h2>Correlations of numeric columns</h2>", _heatmaps(correlations)]
    body += _check_sections(report["checks"])
    body += [_profile_table(report.get("profile", [])), "<h2>Run</h2>", _run_table(run)]
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
        if check["name"] == "constraints" and details.get("rules"):
            sections.append(_rules_section(details))
        if check["name"] == "detection" and details.get("telling"):
            rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{details['columns'][name]:.3f}</td></tr>"
                           for name in details["telling"])
            sections.append(f"<h2>What gives the synthetic rows away</h2><p>A gradient-boosting classifier tells them "
                            f"from real rows with ROC AUC {check['score']:.3f} (0.5: it cannot). Shuffling one of "
                            "these columns among the rows costs it this much AUC:</p><table><tr><th>column</th>"
                            f"<th>AUC lost</th></tr>{rows}</table>")
        if check["name"] == "accuracy" and details.get("univariate"):
            sections.append(_accuracy_section(details))
        if check["name"] == "ml_efficacy" and details.get("synthetic") is not None:
            sections.append(
                f"<h2>ML efficacy</h2><table><tr><th>predicting</th><th>metric</th><th>trained on synthetic</th>"
                f"<th>trained on real</th></tr><tr><td>{html.escape(str(details['target']))}</td>"
                f"<td>{details['metric']}</td><td>{details['synthetic']:.4f}</td><td>{details['real']:.4f}</td>"
                "</tr></table><p>Both models are tested on the real holdout.</p>")
    return sections


def _profile_table(profile: list[dict[str, Any]]) -> str:
    """The source's profile, as ``synthforge profile`` prints it: each column's kind, nulls, values, format."""
    rows = "".join(
        f"<tr><td>{html.escape(c['column'])}</td><td>{c['kind']}</td><td>{_percent(c['nulls'], 1)}</td>"
        f"<td>{c['distinct']:,}</td><td>{html.escape(c['format'] or '')}</td><td>{html.escape(c['note'] or '')}</td>"
        "</tr>" for c in profile)
    return ("<h2>Source profile</h2><table><tr><th>column</th><th>kind</th><th>nulls</th><th>distinct</th>"
            f"<th>format</th><th>note</th></tr>{rows}</table>") if profile else ""


def _accuracy_section(details: dict[str, Any], shown: int = 10) -> str:
    """Each column's accuracy, and the pairs furthest below the holdout's, synthetic beside holdout."""
    def rows(scores: dict[str, dict[str, float]]) -> str:
        return "".join(f"<tr><td>{html.escape(name)}</td><td>{sides['synthetic']:.3f}</td>"
                       f"<td>{_score(sides.get('holdout'))}</td></tr>" for name, sides in scores.items())

    pairs = sorted(details["bivariate"].items(), key=lambda item: item[1]["synthetic"] - item[1].get("holdout", 1))
    header = "<tr><th>{}</th><th>synthetic</th><th>holdout (the ceiling)</th></tr>"
    return ("<h2>Accuracy</h2><p>1 − total variation distance from the training rows' binned values (deciles, the ten "
            "most frequent categories), for the synthetic rows and for real rows the generator never saw.</p>"
            f"<table>{header.format('column')}{rows(details['univariate'])}</table>"
            + (f"<table>{header.format('pair, furthest below the holdout')}{rows(dict(pairs[:shown]))}</table>"
               if pairs else ""))


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _rules_section(details: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(r['rule'])}</td><td>{_percent(r['synthetic'], 2)}</td>"
                   f"<td>{_percent(r['real'], 2)}</td></tr>" for r in details.get("rules", []))
    return ("<h2>Constraints</h2><table><tr><th>rule</th><th>synthetic rows keeping it</th><th>real rows</th></tr>"
            f"{rows}</table>")


def _checks_table(checks: list[dict[str, Any]], private: bool = False) -> str:
    rows = []
    for c in checks:
        state = "pass" if c["passed"] else ("fail" if c["on_fail"] == "error" else "warn")
        score = "n/a" if c["score"] is None else f"{c['score']:.4f}"
        gate = CheckResult(**{k: c[k] for k in CheckResult.__dataclass_fields__}).gate
        rows.append(f"<tr class='{state}'><td>{html.escape(c['name'])}</td><td>{c['kind']}</td><td>{score}</td>"
                    f"<td>{html.escape(gate)}</td><td>{state}</td><td>{html.escape(c['summary'])}</td></tr>")
    note = ("<p class='legend'>Empirical: each score below reads the real rows and is outside the differential-"
            "privacy guarantee, which covers the dataset and the model.</p>") if private else ""
    return ("<h2>Checks</h2>" + note + "<table><tr><th>check</th><th>kind</th><th>score</th><th>gate</th>"
            "<th>result</th><th>summary</th></tr>" + "".join(rows) + "</table>")


def _column_plot(column: dict[str, Any], width: int = 300, height: int = 150) -> str:
    """Real and synthetic bars side by side, with a y-axis of the share of rows and labelled x values."""
    real, fake = column["real"], column["synthetic"]
    n = len(real)
    left, bottom, top_pad = 40, 18 if column["numeric"] else 52, 8
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    top = _nice_ceiling(max([*real, *fake, 1e-9]))
    bar = plot_w / max(n, 1)
    shapes = []
    for tick in (0.0, top / 2, top):
        y = top_pad + plot_h - tick / top * plot_h
        shapes.append(f"<line x1='{left - 3}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e2e8f0'/>"
                      f"<text x='{left - 5}' y='{y + 3:.1f}' text-anchor='end' font-size='9'>{_percent(tick)}</text>")
    shapes.append(f"<line x1='{left}' x2='{left}' y1='{top_pad}' y2='{top_pad + plot_h}' stroke='#718096'/>")
    for i, (a, b) in enumerate(zip(real, fake, strict=True)):
        for offset, value, colour, who in ((0.0, a, REAL_COLOUR, "real"), (0.5, b, SYNTHETIC_COLOUR, "synthetic")):
            h = value / top * plot_h
            shapes.append(f"<rect x='{left + i * bar + offset * bar:.1f}' y='{top_pad + plot_h - h:.1f}' "
                          f"width='{bar / 2:.1f}' height='{h:.1f}' fill='{colour}'><title>{who}: "
                          f"{_percent(value, 2)}</title></rect>")
    axis_y = top_pad + plot_h
    shapes.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{axis_y}' y2='{axis_y}' stroke='#718096'/>")
    if column["numeric"]:
        edges = column["edges"]
        for fraction, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            value = edges[0] + fraction * (edges[-1] - edges[0])
            shapes.append(f"<text x='{left + fraction * plot_w:.1f}' y='{axis_y + 12}' text-anchor='{anchor}' "
                          f"font-size='9'>{html.escape(_number(value))}</text>")
    else:
        for i, category in enumerate(column["categories"]):
            x, name = left + (i + 0.5) * bar, str(category)
            short = name if len(name) <= 12 else name[:11] + "…"
            shapes.append(f"<text x='{x:.1f}' y='{axis_y + 8}' font-size='9' text-anchor='end' "
                          f"transform='rotate(-45 {x:.1f} {axis_y + 8})'><title>{html.escape(name)}</title>"
                          f"{html.escape(short)}</text>")
    nulls = column["null_rate"]
    null_text = (f" · nulls {nulls['real']:.1%} / {nulls['synthetic']:.1%}"
                 if nulls["real"] or nulls["synthetic"] else "")
    return (f"<figure><figcaption>{html.escape(column['name'])}{null_text}</figcaption>"
            f"<svg width='{width}' height='{height}' role='img' aria-label='share of rows per "
            f"{'bin' if column['numeric'] else 'value'} of {html.escape(column['name'])}'>{''.join(shapes)}</svg>"
            f"</figure>")


def _number(value: float) -> str:
    """An axis label: 17, 53.5, 12.3k, 1.48M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:,.4g}"


def _nice_ceiling(value: float) -> float:
    """The axis top: the next of 1, 2, 2.5, 5 × 10^k above ``value``."""
    power = 10 ** np.floor(np.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value - 1e-12))


def _percent(share: float, decimals: int | None = None) -> str:
    if decimals is None:
        decimals = 0 if share == 0 or share >= 0.1 else 1 if share >= 0.01 else 2
    return f"{share * 100:.{decimals}f}%"


def _heatmaps(correlations: dict[str, Any]) -> str:
    real = np.asarray(correlations["real"])
    fake = np.asarray(correlations["synthetic"])
    names = correlations["columns"]
    return "<div class='grid'>" + "".join(
        _heatmap(matrix, names, title) for matrix, title in
        ((real, "real"), (fake, "synthetic"), (fake - real, "difference (synthetic − real)"))
    ) + "</div>" + _colour_scale()


def _correlation_colour(value: float) -> str:
    fade = int(255 * (1 - min(abs(value), 1.0)))
    return f"rgb(255,{fade},{fade})" if value >= 0 else f"rgb({fade},{fade},255)"


def _heatmap(matrix: np.ndarray, names: list[str], title: str, cell: int = 26) -> str:
    n = len(names)
    label = 12 + 6 * max(len(name) for name in names)  # full names: about 6 px a character at 10 px
    cells = []
    for i in range(n):
        cells.append(f"<text x='{label - 4}' y='{label + i * cell + cell * 0.65:.0f}' text-anchor='end' "
                     f"font-size='10'>{html.escape(names[i])}</text>")
        for j in range(n):
            value = float(matrix[i, j])
            cells.append(f"<rect x='{label + j * cell}' y='{label + i * cell}' width='{cell}' height='{cell}' "
                         f"fill='{_correlation_colour(value)}'><title>{html.escape(names[i])} × "
                         f"{html.escape(names[j])}: {value:.3f}</title></rect>")
    for j in range(n):
        x = label + j * cell + cell * 0.6
        cells.append(f"<text x='{x:.0f}' y='{label - 4}' font-size='10' transform='rotate(-60 {x:.0f} {label - 4})'>"
                     f"{html.escape(names[j])}</text>")
    size = label + n * cell + 4
    overhang = label // 2  # the last column's label, rotated, reaches past the grid by about half its length
    return (f"<figure><figcaption>{html.escape(title)}</figcaption>"
            f"<svg width='{size + overhang}' height='{size}' role='img'>{''.join(cells)}</svg></figure>")


def _colour_scale(width: int = 300) -> str:
    """The legend of the heat maps: Pearson correlation (or its difference) from −1 to +1."""
    steps = 40
    stripes = "".join(
        f"<rect x='{10 + k * width / steps:.1f}' y='14' width='{width / steps + 0.5:.1f}' height='12' "
        f"fill='{_correlation_colour(-1 + 2 * (k + 0.5) / steps)}'/>" for k in range(steps))
    ticks = "".join(f"<text x='{10 + (value + 1) / 2 * width:.1f}' y='38' font-size='10' text-anchor='middle'>"
                    f"{value:+g}</text>" for value in (-1, -0.5, 0, 0.5, 1))
    return (f"<figure><figcaption>colour scale: Pearson correlation (and difference), −1 to +1</figcaption>"
            f"<svg width='{width + 20}' height='42' role='img' aria-label='colour scale'>{stripes}"
            f"<rect x='10' y='14' width='{width}' height='12' fill='none' stroke='#718096'/>{ticks}</svg></figure>")


def _privacy_off(run: dict[str, Any]) -> str:
    turned_off = run.get("privacy_turned_off") or []
    if not turned_off:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in turned_off)
    return ("<div class='privacy-off'><strong>Privacy protections turned off by this recipe</strong>"
            f"<ul>{items}</ul>Rows of this dataset may copy real training rows.</div>")


def _privacy_budget(run: dict[str, Any]) -> str:
    """Under differential privacy: the budget asked for and spent, by stage and mechanism, and what it covers."""
    budget = run.get("differential_privacy")
    if not budget:
        return ""
    spent, asked = budget["spent"], budget["requested"]
    stages = " · ".join(f"{stage} {entry['mechanisms']} mechanism{'s' if entry['mechanisms'] != 1 else ''} "
                        f"(ε {entry['epsilon_alone']:.3g} on its own)" for stage, entry in budget["stages"].items())
    rows = "".join(
        f"<tr><td>{html.escape(str(m['name']))}</td><td>{html.escape(str(m['stage']))}</td><td>"
        + html.escape(", ".join(f"{k} {v}" for k, v in m.items() if k not in ("name", "stage"))) + "</td></tr>"
        for m in budget["mechanisms"][:60])
    more = len(budget["mechanisms"]) - 60
    return (
        "<div class='privacy-budget'><h2>Differential privacy</h2>"
        f"<p><strong>Spent ε = {spent['epsilon']:.4g}, δ = {spent['delta']:.3g}</strong> of the budget "
        f"ε = {asked['epsilon']:g}, δ = {asked['delta']:.3g} ({html.escape(budget['accountant'])}). "
        f"{html.escape(stages)}.</p>"
        "<p><strong>Covered by the guarantee:</strong> the synthetic dataset and the saved model — everything "
        "they hold about the training rows went through the mechanisms below. <strong>Empirical, not covered:"
        "</strong> every check and plot of this report compares with the real training and holdout rows; share "
        "this report as you would the real data. Copy protection (redrawing copies of rare rows) is off: it "
        "would read the rows after the budget is spent.</p>"
        "<details><summary>Mechanisms charged to the budget</summary><table><tr><th>mechanism</th><th>stage</th>"
        f"<th>settings</th></tr>{rows}</table>{f'<p>… and {more} more</p>' if more > 0 else ''}</details></div>")


def _run_table(run: dict[str, Any]) -> str:
    """The run's metadata in words: timings in seconds, rows and params as short lists, not raw JSON."""
    rows = []
    for key, value in run.items():
        if key in ("privacy_turned_off", "differential_privacy"):
            continue
        if key == "timings" and isinstance(value, dict):
            total = sum(value.values())
            text = " · ".join(f"{stage} {seconds:,.2f} s" for stage, seconds in value.items())
            text = f"{text} — total {total:,.2f} s"
        elif key == "rows" and isinstance(value, dict):
            text = " · ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in value.items())
        elif isinstance(value, dict):
            text = " · ".join(f"{name} = {_short(item)}" for name, item in value.items()) or "—"
        elif isinstance(value, list):
            text = ", ".join(map(_short, value)) or "—"
        else:
            text = _short(value)
        rows.append(f"<tr><th>{html.escape(key.replace('_', ' '))}</th><td>{html.escape(text)}</td></tr>")
    return "<table class='run'>" + "".join(rows) + "</table>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "—" if value is None else str(value)


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
svg text {{ fill: #2d3748; }} code {{ font-size: 12px; word-break: break-all; }}
table.run th {{ white-space: nowrap; }} table.run td {{ max-width: 900px; }}
.privacy-off {{ border: 2px solid #c53030; background: #fff5f5; color: #c53030; padding: 0.6em 1em;
 margin: 1em 0; }} .privacy-off ul {{ margin: 0.3em 0; }}
</style></head><body>
{body}
</body></html>
"""
