"""The judge report rendered by a real browser: headless Chromium from Debian's packages.

The report itself forbids scripts (CSP), so a measuring page loads it in an iframe
(--allow-file-access-from-files makes the two file:// pages same-origin), writes the bounding box of
every `data-testid` element into its own DOM, and --dump-dom prints that DOM.
"""

import json
import re
from html import unescape
from pathlib import Path

import pytest

from steps.judge.report import render_report
from tests.fixtures.report_data import INJECTED, sample_report
from tests.support.chromium import chromium

PLOT_HEIGHT = 200  # px for a rate of 1.0 (steps/judge/report.py)

MEASURE = """<!DOCTYPE html><html><body><pre id="boxes">pending</pre>
<iframe id="report" src="report.html" width="1200" height="3000"></iframe>
<script>
window.addEventListener("load", () => {
  let out;
  try {
    const doc = document.getElementById("report").contentDocument;
    out = {scripts: doc.querySelectorAll("script").length, text: doc.body.textContent, boxes: {}};
    for (const el of doc.querySelectorAll("[data-testid]")) {
      const box = el.getBoundingClientRect();
      out.boxes[el.dataset.testid] = {tag: el.tagName.toLowerCase(), width: box.width, height: box.height};
    }
  } catch (error) {
    out = {error: String(error)};
  }
  document.getElementById("boxes").textContent = JSON.stringify(out);
});
</script></body></html>"""


@pytest.fixture()
def report(tmp_path: Path):
    metrics, records = sample_report()
    (tmp_path / "report.html").write_text(render_report(metrics, records, examples=3, run_id="chromium"))
    return metrics


def test_charts_render_to_scale(tmp_path: Path, report) -> None:
    (tmp_path / "measure.html").write_text(MEASURE)
    dom = chromium(tmp_path, "--allow-file-access-from-files", "--virtual-time-budget=10000",
                   "--dump-dom", (tmp_path / "measure.html").as_uri()).stdout
    measured = json.loads(unescape(re.search(r'<pre id="boxes">(.*?)</pre>', dom, re.DOTALL).group(1)))
    assert "error" not in measured, measured.get("error")
    assert measured["scripts"] == 0
    assert INJECTED in measured["text"]  # shown as text, not parsed as markup
    boxes = measured["boxes"]

    for key in ("a_rate", "b_rate", "c_rate", "stop_rate", "refusal_rate", "language_rate", "length_rate"):
        for role, summary in (("candidate", report.candidate), ("champion", report.champion)):
            interval = getattr(summary, key)
            bar, whisker = boxes[f"bar-{key}-{role}"], boxes[f"ci-{key}-{role}"]
            assert (bar["tag"], whisker["tag"]) == ("rect", "line")
            assert bar["width"] > 10
            assert bar["height"] == pytest.approx(interval.value * PLOT_HEIGHT, abs=1), (key, role)
            assert whisker["height"] == pytest.approx((interval.high - interval.low) * PLOT_HEIGHT, abs=1)
            assert whisker["height"] > 0, (key, role)
    for testid in ("threshold-stop_rate", "threshold-refusal_rate", "diff-ci-a_rate", "diff-ci-c_rate"):
        assert boxes[testid]["tag"] == "line" and boxes[testid]["width"] > 0, testid
    for testid in ("chart-grades", "chart-checks", "chart-difference", "gate"):
        assert boxes[testid]["width"] > 100 and boxes[testid]["height"] > 50, testid
    # The per-item table is laid out with a row per item (30 rows of at least one line each).
    assert boxes["items-table"]["tag"] == "table" and boxes["items-table"]["height"] > 30 * 15


def test_screenshot_shows_the_bars(tmp_path: Path, report) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,1500", f"--screenshot={shot}",
             (tmp_path / "report.html").as_uri())
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1500)
    colors = {rgb: count for count, rgb in image.getcolors(maxcolors=1 << 20)}
    # Candidate bars (#2563eb) and champion bars (#9ca3af): several 22 px wide bars each.
    assert colors.get((0x25, 0x63, 0xEB), 0) > 5000
    assert colors.get((0x9C, 0xA3, 0xAF), 0) > 5000
    assert colors.get((0xDC, 0xFC, 0xE7), 0) + colors.get((0xFE, 0xE2, 0xE2), 0) > 10000  # gate banner
