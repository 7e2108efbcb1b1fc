"""Live progress of a local run: a rich display on a terminal, one line per event otherwise (CI, logs)."""

import sys
from typing import TYPE_CHECKING, Protocol

from pipelines.local.records import StepRecord

if TYPE_CHECKING:
    from rich.console import Console


class RunDisplay(Protocol):
    def start(self, steps: list[str]) -> None: ...
    def step_started(self, name: str) -> None: ...
    def step_progress(self, name: str, current: int, total: int) -> None: ...
    def step_finished(self, record: StepRecord) -> None: ...
    def stop(self) -> None: ...


class LineDisplay:
    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def start(self, steps: list[str]) -> None:
        print(f"steps: {' -> '.join(steps)}", flush=True)

    def step_started(self, name: str) -> None:
        print(f"[{name}] started", flush=True)

    def step_progress(self, name: str, current: int, total: int) -> None:
        decile = current * 10 // max(total, 1)
        if decile != self._last.get(name):  # a line every 10%, not every item
            self._last[name] = decile
            print(f"[{name}] {current}/{total}", flush=True)

    def step_finished(self, record: StepRecord) -> None:
        print(f"[{record.name}] {record.status} in {record.duration_s:.1f}s", flush=True)

    def stop(self) -> None:
        pass


class RichDisplay:
    def __init__(self, console: "Console | None" = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

        self._progress = Progress(SpinnerColumn(), "[bold]{task.description}", BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), "{task.fields[status]}",
                                  console=console)
        self._tasks: dict[str, int] = {}

    def start(self, steps: list[str]) -> None:
        for name in steps:
            self._tasks[name] = self._progress.add_task(name, total=None, start=False, status="pending")
        self._progress.start()

    # Status changes are drawn at once (refresh=True), not at the next tick: a step can finish between ticks.
    def step_started(self, name: str) -> None:
        self._progress.start_task(self._tasks[name])
        self._progress.update(self._tasks[name], status="running", refresh=True)

    def step_progress(self, name: str, current: int, total: int) -> None:
        self._progress.update(self._tasks[name], completed=current, total=total)

    def step_finished(self, record: StepRecord) -> None:
        task = self._tasks[record.name]
        self._progress.update(task, status=record.status, total=1, completed=1, refresh=True)
        self._progress.stop_task(task)

    def stop(self) -> None:
        self._progress.stop()


def default_display() -> RunDisplay:
    return RichDisplay() if sys.stdout.isatty() else LineDisplay()
