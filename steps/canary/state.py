"""The canary's progress record, so a step re-run after a crash converges to the same end state.

One JSON object in the artifact store (`<run>/canary/state/state.json`, written atomically after every
phase and interval). Phases, in order:

    started   -> baseline (the previous champion) fixed, challenger loaded on every replica
    shifted   -> the challenger receives `traffic_fraction` of the family's traffic; intervals follow
    decided   -> promoted | rolled_back, with the reason (never re-decided by a re-run)
    finalized -> routes, adapters, adapter set and registry aliases match the decision
    done      -> report published; a re-run returns the recorded outputs

A re-run re-applies everything from the last recorded phase on: loading an adapter twice, setting the split
absolutely and the registry's compare-and-set are all idempotent.
"""

import time
from typing import Literal

from pydantic import BaseModel, Field

from steps.canary.analysis import AdapterStats, Check, QualityTally
from steps.canary.load import LoadSummary
from steps.canary.shadow import ShadowItem
from steps.common.contract import RuntimeContext
from steps.common.storage import StorageError, join_uri

Phase = Literal["started", "shifted", "decided", "finalized", "done"]
PHASES: tuple[str, ...] = ("started", "shifted", "decided", "finalized", "done")
STATE_FILE = "state.json"


class Event(BaseModel):
    at: float  # unix time
    event: str
    detail: str = ""


class IntervalRecord(BaseModel):
    index: int  # 1-based
    started_at: float
    ended_at: float  # the evaluation time (the window is (started_at, ended_at])
    challenger: AdapterStats | None
    champion: AdapterStats | None
    server: AdapterStats | None = None  # vLLM's whole-server series (its base model's name), every adapter
    checks: list[Check]
    judged: bool
    breaches: list[str]
    load: LoadSummary | None = None
    shadow_items: int = 0  # judged so far (cumulative)


class CanaryState(BaseModel):
    model_version: str
    family: str
    challenger: str  # served name of the candidate
    baseline_version: str | None  # the champion before promote (the `previous` alias at the start)
    champion: str | None  # its served name
    phase: Phase = "started"
    intervals: list[IntervalRecord] = Field(default_factory=list)
    quality: QualityTally = Field(default_factory=QualityTally)
    shadow_items: list[ShadowItem] = Field(default_factory=list)
    shadow_batches_done: list[int] = Field(default_factory=list)
    decision: Literal["promoted", "rolled_back", "skipped"] | None = None
    reason: str = ""
    champion_version_after: str = ""
    report_uri: str = ""
    attempts: int = 1  # how many times the step ran on this record
    events: list[Event] = Field(default_factory=list)

    def reached(self, phase: str) -> bool:
        return PHASES.index(self.phase) >= PHASES.index(phase)

    def log(self, event: str, detail: str = "") -> Event:
        entry = Event(at=time.time(), event=event, detail=detail)
        self.events.append(entry)
        return entry

    def first(self, event: str) -> Event | None:
        return next((e for e in self.events if e.event == event), None)


def state_uri(context: RuntimeContext) -> str:
    return join_uri(context.output_uri("canary", "state"), STATE_FILE)


def load_state(context: RuntimeContext) -> CanaryState | None:
    try:
        raw = context.store().read_bytes(state_uri(context))
    except StorageError:
        return None
    return CanaryState.model_validate_json(raw)


def save_state(context: RuntimeContext, state: CanaryState) -> None:
    context.store().write_bytes(state_uri(context), state.model_dump_json(indent=1).encode())
