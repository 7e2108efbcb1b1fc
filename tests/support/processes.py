"""What runs on this machine, read from /proc: to prove that no child outlived the code that started it."""

from pathlib import Path


def command_lines(containing: str) -> dict[int, str]:
    """pid -> command line (arguments joined by spaces) of every live process whose command line has `containing`."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it ended while we looked
        if containing in argv and is_alive(int(cmdline.parent.name)):
            found[int(cmdline.parent.name)] = argv
    return found


def is_alive(pid: int) -> bool:
    """Running or sleeping; a zombie (exited, not yet reaped) is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
