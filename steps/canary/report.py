"""The canary report: `canary_report.json` (everything recorded), `canary_report.md` and a self-contained
`canary_report.html` (inline CSS, no script, no network; every recorded text escaped).

Counts, timings, grades and decisions only: no prompt, question or answer text. Per interval: the
challenger's and the champion's numbers (measured by the canary locally, the gateway's on a cluster) and
the whole server's (vLLM's series for the base model).
"""

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from steps.canary.settings import CanarySettings
from steps.canary.state import CanaryState

JSON_FILE = "canary_report.json"
MD_FILE = "canary_report.md"
HTML_FILE = "canary_report.html"

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#111827;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #e5e7eb;padding:.3rem .5rem;text-align:left;
vertical-align:top}.promoted{background:#dcfce7;border:1px solid #16a34a}.rolled_back{background:#fee2e2;
border:1px solid #dc2626}.skipped{background:#f3f4f6;border:1px solid #9ca3af}.decision{padding:.8rem 1rem;
border-radius:6px;font-weight:600}.breach{color:#b91c1c;font-weight:600}.no_data{color:#6b7280}"""


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def build(state: CanaryState, settings: CanarySettings, routing: dict[str, Any]) -> dict[str, Any]:
    return {
        "decision": state.decision, "reason": state.reason,
        "model_version": state.model_version, "challenger": state.challenger,
        "baseline_version": state.baseline_version, "champion": state.champion,
        "champion_version_after": state.champion_version_after,
        "attempts": state.attempts,
        "routing": routing,
        "settings": settings.model_dump(mode="json"),
        "intervals": [i.model_dump(mode="json") for i in state.intervals],
        "quality": {**state.quality.model_dump(mode="json"), "items": state.quality.items},
        "shadow_items": [s.model_dump(mode="json") for s in state.shadow_items],
        "events": [e.model_dump(mode="json") for e in state.events],
    }


def markdown(state: CanaryState) -> str:
    lines = [f"# Canary of {state.challenger}: {state.decision}", "", f"**Reason:** {state.reason}", "",
             f"- challenger: `{state.challenger}` (registry version {state.model_version})",
             f"- baseline champion: `{state.champion or 'none'}`",
             f"- champion after the canary: version {state.champion_version_after or 'none'}",
             f"- step attempts: {state.attempts}", "",
             ("| interval | judged | challenger requests / errors | champion requests / errors | "
              "e2e p95 (challenger / champion) | server requests / errors, e2e p95 | breaches |"),
             "|---|---|---|---|---|---|---|"]
    for i in state.intervals:
        ch, cp, sv = i.challenger, i.champion, i.server
        lines.append(f"| {i.index} | {'yes' if i.judged else 'no'} | "
                     f"{_num(ch.requests if ch else None, '{:g}')} / {_num(ch.errors if ch else None, '{:g}')} | "
                     f"{_num(cp.requests if cp else None, '{:g}')} / {_num(cp.errors if cp else None, '{:g}')} | "
                     f"{_num(ch.e2e_p95_s if ch else None)} / {_num(cp.e2e_p95_s if cp else None)} | "
                     f"{_num(sv.requests if sv else None, '{:g}')} / {_num(sv.errors if sv else None, '{:g}')}, "
                     f"{_num(sv.e2e_p95_s if sv else None)} | "
                     f"{'; '.join(i.breaches) or '-'} |")
    q = state.quality
    lines += ["", (f"Shadow quality: {q.items} items; challenger {q.challenger}, champion {q.champion}, "
                  f"unusable challenger verdicts {q.unusable}"), "", "## Timeline", ""]
    lines += [f"- {_when(e.at)} **{e.event}** {e.detail}" for e in state.events]
    return "\n".join(lines) + "\n"


def html(state: CanaryState) -> str:
    e = escape
    rows = []
    for i in state.intervals:
        checks = "<br>".join(f'<span class="{e(c.status)}">{e(c.name)}: {e(c.detail)}</span>' for c in i.checks)
        rows.append(f"<tr><td>{i.index}</td><td>{_when(i.started_at)}<br>{_when(i.ended_at)}</td>"
                    f"<td>{'yes' if i.judged else 'no'}</td><td>{checks}</td></tr>")
    events = "".join(f"<tr><td>{_when(ev.at)}</td><td>{e(ev.event)}</td><td>{e(ev.detail)}</td></tr>"
                     for ev in state.events)
    q = state.quality
    decision = state.decision or "undecided"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Canary {e(state.challenger)}: {e(decision)}</title><style>{_CSS}</style></head><body>
<h1>Canary of {e(state.challenger)}</h1>
<p class="decision {e(decision)}" data-testid="decision">{e(decision)}: {e(state.reason)}</p>
<p>Baseline champion: {e(state.champion or "none")}; champion after the canary: version
{e(state.champion_version_after or "none")}; step attempts: {state.attempts}.</p>
<h2>Intervals</h2><table><tr><th>#</th><th>window (UTC)</th><th>judged</th><th>checks</th></tr>{''.join(rows)}</table>
<h2>Shadow quality</h2><p>{q.items} items judged. Challenger {e(json.dumps(q.challenger))}, champion
{e(json.dumps(q.champion))}; unusable challenger verdicts: {q.unusable}.</p>
<h2>Timeline</h2><table><tr><th>time (UTC)</th><th>event</th><th>detail</th></tr>{events}</table>
</body></html>
"""


def write(out_dir: Path, state: CanaryState, settings: CanarySettings, routing: dict[str, Any]) -> None:
    (out_dir / JSON_FILE).write_text(json.dumps(build(state, settings, routing), indent=1), encoding="utf-8")
    (out_dir / MD_FILE).write_text(markdown(state), encoding="utf-8")
    (out_dir / HTML_FILE).write_text(html(state), encoding="utf-8")
