"""The report of an image run: ``report.json`` and a self-contained ``report.html``.

The page shows the gates, a grid of synthetic images per class, and the synthetic images closest to a
training image beside that image (what a near-copy would look like), as inline ``data:`` PNGs: the file
opens offline and makes no network request.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from synthforge.checks.base import CheckResult
from synthforge.checks.images import _flat, nearest_distances
from synthforge.data.images import ImageSet
from synthforge.report import _PAGE, REPORT_SCHEMA_VERSION, _checks_table, _json_default, _privacy_off, _run_table

PER_CLASS = 8
CLOSEST = 8
SHOWN_PIXELS = 56


def build_image_report(*, info: dict[str, Any], train: ImageSet, synthetic: ImageSet,
                       checks: list[CheckResult]) -> dict[str, Any]:
    closest = _closest_pairs(train, synthetic)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "images",
        "run": info,
        "passed": all(c.passed or c.on_fail == "warn" for c in checks),
        "checks": [c.as_dict() for c in checks],
        "images": {"shape": list(train.shape), "classes": train.classes, "training": train.counts(),
                   "synthetic": synthetic.counts()},
        "closest": [{"synthetic": synthetic.files[s], "training": train.files[t], "distance": d}
                    for s, t, d in closest],
    }


def write_image_reports(directory: Path, *, info: dict[str, Any], train: ImageSet, synthetic: ImageSet,
                        checks: list[CheckResult]) -> dict[str, Any]:
    report = build_image_report(info=info, train=train, synthetic=synthetic, checks=checks)
    (directory / "report.json").write_text(json.dumps(report, indent=1, default=_json_default))
    (directory / "report.html").write_text(render_image_html(report, train, synthetic), encoding="utf-8")
    return report


def render_image_html(report: dict[str, Any], train: ImageSet, synthetic: ImageSet) -> str:
    run = report["run"]
    title = f"SynthForge report — {html.escape(str(run.get('recipe', 'images')))}"
    verdict = "passed" if report["passed"] else "FAILED"
    feature_space = next((c["details"].get("feature_space") for c in report["checks"]
                          if c["details"].get("feature_space")), None)
    body = [f"<h1>{title}</h1>", f"<p class='verdict {'ok' if report['passed'] else 'bad'}'>Gates {verdict}</p>",
            _privacy_off(run), _checks_table(report["checks"])]
    if feature_space:
        body.append(f"<p class='legend'>Feature space of the Fréchet distance and precision/recall: "
                    f"{html.escape(feature_space)}.</p>")
    body.append("<h2>Synthetic images by class</h2><table>")
    for label, name in enumerate(synthetic.classes):
        shown = synthetic.pixels[synthetic.labels == label][:PER_CLASS]
        body.append(f"<tr><th>{html.escape(name)}</th><td>" + "".join(_img(p) for p in shown) + "</td></tr>")
    body.append("</table>")
    if report["closest"]:
        by_file = {f: i for i, f in enumerate(synthetic.files)}
        train_by_file = {f: i for i, f in enumerate(train.files)}
        body.append("<h2>Synthetic images closest to a training image</h2><p class='legend'>Each synthetic image "
                    "(left) beside its nearest training image (right), RMS pixel distance below: a distance near 0 "
                    "is a copy.</p><table><tr>")
        for pair in report["closest"]:
            body.append(f"<td>{_img(synthetic.pixels[by_file[pair['synthetic']]])}"
                        f"{_img(train.pixels[train_by_file[pair['training']]])}<br>{pair['distance']:.4f}</td>")
        body.append("</tr></table>")
    body += ["<h2>Run</h2>", _run_table(run)]
    return _PAGE.format(title=title, body="\n".join(body))


def _closest_pairs(train: ImageSet, synthetic: ImageSet) -> list[tuple[int, int, float]]:
    """(synthetic index, nearest training index, distance) of the synthetic images nearest to training ones."""
    if len(synthetic) == 0 or len(train) == 0:
        return []
    from scipy.spatial.distance import cdist

    train_rows, synthetic_rows = _flat(train.pixels), _flat(synthetic.pixels)
    distances = nearest_distances(synthetic_rows, train_rows)
    chosen = np.argsort(distances, kind="stable")[:CLOSEST]
    nearest = cdist(synthetic_rows[chosen], train_rows).argmin(axis=1)
    return [(int(s), int(t), float(distances[s])) for s, t in zip(chosen, nearest, strict=True)]


def _img(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    array = pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return (f"<img src='data:image/png;base64,{data}' width='{SHOWN_PIXELS}' height='{SHOWN_PIXELS}' "
            f"style='image-rendering:pixelated;margin:1px' alt=''>")
