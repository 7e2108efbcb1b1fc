"""Progress for long steps: `current/total` written to $ARGO_PROGRESS_FILE (Argo UI; the local runner
reads the same file for its live display)."""

import os
from pathlib import Path


class Progress:
    def __init__(self, total: int) -> None:
        self.total = max(int(total), 1)
        self.current = 0
        target = os.environ.get("ARGO_PROGRESS_FILE")
        self._path = Path(target) if target else None
        self._write()

    def advance(self, n: int = 1) -> None:
        self.current = min(self.current + n, self.total)
        self._write()

    def _write(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        tmp.write_text(f"{self.current}/{self.total}")
        os.replace(tmp, self._path)
