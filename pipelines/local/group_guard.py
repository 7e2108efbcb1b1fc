"""`python -m pipelines.local.group_guard -- ARGV...`: run ARGV; when told to stop, stop its whole process group.

For servers whose own shutdown is not enough: vLLM's API server may ignore a SIGTERM that lands while its
engine starts, and its engine process does not watch its parent. `server_process` starts this guard in a
session of its own with the kernel's parent-death signal, so SIGTERM reaches it when the block ends and when
the process that started it dies (even by SIGKILL); it passes SIGTERM on, waits `--grace-s`, then SIGKILLs
every process left in the group, itself included.
"""

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.local.group_guard")
    parser.add_argument("--grace-s", type=float, default=5.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- ARGV...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    child = subprocess.Popen(command)  # same process group as the guard

    def stop(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM reaches the guard too
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=args.grace_s)
            except subprocess.TimeoutExpired:
                pass
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
