"""Error types shared by every step and the runners."""


class TransientError(RuntimeError):
    """A failure worth retrying (endpoint down, timeout). Steps exit with EXIT_TRANSIENT for it."""


# EX_TEMPFAIL from sysexits.h; Argo's retryStrategy expression and the local runner retry only on it.
EXIT_TRANSIENT = 75
