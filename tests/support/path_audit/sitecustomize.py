"""Records every file a Python process opens or lists outside the allowed folders (stdlib only).

On PYTHONPATH first, it loads into every Python process a test starts, and into their children. With
EUROLORA_TEST_PATH_AUDIT=FILE and EUROLORA_TEST_ALLOWED_ROOTS (a JSON list of folders), an audit hook
appends one JSON line (event, path, pid, argv) to FILE for each `open`, `os.listdir`, `os.scandir` or
`glob.glob` of a path under none of the roots. The audit hook sees the call before the system call, so a
read that fails (the file does not exist) is recorded too.
"""

import json
import os
import sys

_FILE = os.environ.get("EUROLORA_TEST_PATH_AUDIT")
_ROOTS = tuple(os.path.join(os.path.realpath(r), "") for r in json.loads(os.environ.get("EUROLORA_TEST_ALLOWED_ROOTS") or "[]"))
_EVENTS = {"open", "os.listdir", "os.scandir", "glob.glob"}

if _FILE and _ROOTS:
    _recording = False

    def _audit(event, args):
        global _recording
        if event not in _EVENTS or _recording or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        _recording = True  # writing the record opens a file too
        try:
            path = os.fsdecode(args[0]) or "."
            real = os.path.join(os.path.realpath(path), "")
            if not real.startswith(_ROOTS):
                with open(_FILE, "a") as out:
                    out.write(json.dumps({"event": event, "path": path, "real": real.rstrip("/"),
                                          "pid": os.getpid(), "argv": sys.argv[:4]}) + "\n")
        finally:
            _recording = False

    sys.addaudithook(_audit)
