"""The promotion lock (a lease on the MLflow registry) and the champion compare-and-set it guards.

MLflow has no conditional alias write, so promoters serialise through a lease: a registered model
`<model>.promotion-lock` created with the owner's token and expiry as tags (creation is atomic). Inside
the lease the champion is re-read and moved only if it is still the one the judge compared against.
"""

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel, Field

from steps.common.contract import TransientError
from steps.common.registry import CHAMPION, MISSING, PREVIOUS, Registry, short_error
from steps.common.tags import LOCK_EXPIRES_TAG, LOCK_OWNER_TAG, LOCK_PURPOSE_TAG

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"


class LeaseLost(TransientError):
    """The promotion lock is no longer ours (expired, or broken by another promoter): nothing was moved."""


class LeaseSettings(BaseModel):
    """How the promotion lock behaves (see `Registry.lock`)."""

    model_config = {"extra": "forbid"}
    # A crashed holder's lock is breakable after this. Must leave room for one bounded registry call
    # inside half of it (`Registry.call_bound_s`); the other half absorbs clock skew between hosts.
    ttl_s: float = Field(300.0, gt=0)
    wait_s: float = Field(60.0, ge=0)  # give up (TransientError, so the step is retried) after this
    settle_s: float = Field(0.5, ge=0)  # wait, then re-read the lock to confirm we still own it
    poll_s: float = Field(0.25, gt=0)  # how often a waiter looks again (with jitter)


class CasResult(BaseModel):
    outcome: Literal["swapped", "already_champion", "refused"]
    champion_version: str | None  # the champion after the attempt
    previous_version: str | None  # the `previous` alias after the attempt (None if not touched/unknown)
    reason: str
    lock_wait_s: float  # time spent waiting for the promotion lock (contention diagnostic)

    @property
    def promoted(self) -> bool:
        return self.outcome in ("swapped", "already_champion")


class Lease(BaseModel):
    token: str
    acquired_monotonic: float  # taken before the create request that won the lock was sent
    ttl_s: float
    call_bound_s: float  # the longest one registry call can take (timeout x attempts + backoff)
    waited_s: float

    def assert_fresh(self) -> None:
        """Refuse to start a write that could still be in flight after half the TTL.

        The lock expires after `ttl_s` by the holder's wall clock as others read it; stopping at
        `ttl_s / 2` on our monotonic clock leaves the other half for clock skew between hosts.
        """
        held = time.monotonic() - self.acquired_monotonic
        if held + self.call_bound_s > self.ttl_s / 2:
            raise LeaseLost(f"promotion lock held for {held:.1f}s; a registry call may take "
                            f"{self.call_bound_s:.0f}s more, past half its ttl of {self.ttl_s}s: stopping "
                            "before moving an alias; raise promote.lock.ttl_s if the registry is slow")


def _fmt(version: str | None) -> str:
    return f"version {version}" if version else "no champion"


class PromotionLock:
    """The registry-wide lease that serialises alias moves of one registered model (promote, canary
    rollback, restore); see `compare_and_set_champion` for its guarantee and limits."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.name = registry.model_name + LOCK_SUFFIX

    @contextmanager
    def lock(self, lease: LeaseSettings | None = None, purpose: str = "promote") -> Iterator[Lease]:
        """Hold the registry-wide promotion lock for the block (see `compare_and_set_champion`)."""
        lease = lease or LeaseSettings()
        if lease.ttl_s / 2 - self.registry.call_bound_s < lease.settle_s + 1:
            raise ValueError(
                f"lock ttl_s={lease.ttl_s} is too short for registry calls that may each take "
                f"{self.registry.call_bound_s:.0f}s (timeout_s x attempts + backoff): use ttl_s >= "
                f"{2 * (self.registry.call_bound_s + lease.settle_s + 1):.0f} or lower registry.timeout_s")
        held = self._acquire(lease, purpose)
        try:
            yield held
        finally:
            self._release(held)

    def read(self) -> dict[str, str] | None:
        """The lock's tags (owner, expiry, purpose), or None when nobody holds it."""
        model = self.registry.request("read promotion lock", lambda c: c.get_registered_model(self.name),
                                      "reading the promotion lock", tolerate={MISSING})
        return None if model is None else dict(model.tags or {})

    def _delete(self) -> None:
        self.registry.request("delete promotion lock", lambda c: c.delete_registered_model(self.name),
                              "deleting the promotion lock", tolerate={MISSING})

    def _acquire(self, lease: LeaseSettings, purpose: str) -> Lease:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        started = time.monotonic()
        description = (f"Lease held while {self.registry.model_name}'s aliases move; deleted on release, "
                       "breakable once expired.")
        while True:
            attempt = time.monotonic()
            tags = {LOCK_OWNER_TAG: token, LOCK_EXPIRES_TAG: f"{time.time() + lease.ttl_s:.3f}",
                    LOCK_PURPOSE_TAG: purpose}
            # Creating a registered model is atomic (primary key on its name): one creator wins.
            created = self.registry.request(
                "create promotion lock",
                lambda c, tags=tags: c.create_registered_model(self.name, tags=tags, description=description),
                "creating the promotion lock", tolerate={"RESOURCE_ALREADY_EXISTS", MISSING})
            if created is None:
                holder = self.read()
                # Ours when an HTTP retry re-sent a create whose first reply was lost.
                if holder is None or holder.get(LOCK_OWNER_TAG) != token:
                    self._wait_for_release(holder, lease, started)
                    continue
            # Settle, then confirm: catches a breaker that deleted a lock it thought stale and made its own.
            time.sleep(lease.settle_s)
            holder = self.read()
            if holder is None or holder.get(LOCK_OWNER_TAG) != token:
                log.warning("promotion lock taken over during settle by %s; retrying",
                            holder and holder.get(LOCK_OWNER_TAG))
                continue
            return Lease(token=token, acquired_monotonic=attempt, ttl_s=lease.ttl_s,
                         call_bound_s=self.registry.call_bound_s, waited_s=attempt - started)

    def _wait_for_release(self, holder: dict[str, str] | None, lease: LeaseSettings, started: float) -> None:
        """Poll (reads only, with backoff) until the lock is gone, or break it once it has expired."""
        delay = lease.poll_s
        while holder is not None:
            if _expired(holder):
                self._break(holder)
                return
            if time.monotonic() - started > lease.wait_s:
                raise TransientError(
                    f"promotion lock {self.name!r} is held by {holder.get(LOCK_OWNER_TAG)} "
                    f"(expires at {holder.get(LOCK_EXPIRES_TAG)}); gave up after {lease.wait_s}s")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, lease.poll_s * 8)
            holder = self.read()

    def _break(self, stale: dict[str, str]) -> None:
        """Delete an expired lock, but only if it is still the same one we judged expired."""
        current = self.read()
        if current is not None and current.get(LOCK_OWNER_TAG) == stale.get(LOCK_OWNER_TAG):
            log.warning("breaking expired promotion lock %r of %s (expired at %s)", self.name,
                        stale.get(LOCK_OWNER_TAG), stale.get(LOCK_EXPIRES_TAG))
            self._delete()

    def confirm(self, lease: Lease) -> None:
        """Raise LeaseLost unless the lock is still ours and young enough to act on."""
        lease.assert_fresh()
        holder = self.read()
        if holder is None or holder.get(LOCK_OWNER_TAG) != lease.token:
            raise LeaseLost(f"promotion lock {self.name!r} is no longer ours (now held by "
                            f"{holder and holder.get(LOCK_OWNER_TAG)}): no alias was moved")

    def _release(self, lease: Lease) -> None:
        try:
            holder = self.read()
            if holder is not None and holder.get(LOCK_OWNER_TAG) == lease.token:
                self._delete()
        except Exception as exc:  # noqa: BLE001 -- never mask the block's own error; the lock expires
            log.warning("could not release promotion lock %r (it expires after its ttl): %s",
                        self.name, short_error(exc))

    def compare_and_set_champion(self, new_version: str, expected_champion: str | None,
                                 lease: LeaseSettings | None = None) -> CasResult:
        """Make `new_version` the champion only if the champion is still `expected_champion`.

        `expected_champion` is the version the judge compared against (None: there was no champion).
        On success `previous` points at the old champion (untouched when there was none) and
        `champion` at `new_version`. If the champion moved since the judge read it, nothing moves and
        the result says why (`refused`). Calling it again after success returns `already_champion`
        (so a retried step is idempotent).

        Guarantee: promoters that all go through this method (or `lock`) are mutually excluded by a
        registry-wide lease: a registered model `<model>.promotion-lock`, created with the owner's
        random token and an expiry as tags. Creating it is atomic in MLflow's SQL backends (primary key
        on the name): of two creators exactly one succeeds, whatever the timing; a create re-sent by an
        HTTP retry after a lost reply is recognised by its token. Inside the lease the champion is
        re-read and compared with `expected_champion`, so of promotions racing from the same expected
        champion exactly one moves the aliases and the others are refused with a reason. Waiters only
        read (backing off) until the lock is gone; `lock_wait_s` reports how long they waited.

        Limits: MLflow has no conditional alias write, so the lease is advisory: anything that sets
        aliases directly (UI, scripts) bypasses it. A crashed holder blocks promotions until its
        `ttl_s` has passed (waiters give up after `wait_s` with TransientError, so the step retries);
        then the lock is broken (deleted if still the same owner) and re-created. Only breaking relies
        on timing: a holder never starts a write that could still be in flight after half its TTL
        (monotonic clock plus `call_bound_s`; the other half absorbs clock skew between hosts), and it
        re-reads the owner after a `settle_s` pause and again right before the alias writes, so two
        processes breaking the same stale lock both proceeding needs a stall longer than those windows
        between one's read and its delete. If the registry fails mid-way, `previous` may have moved
        without `champion` (harmless: the champion is unchanged and a retry completes the swap).
        """
        expected = expected_champion or None
        new_version = str(new_version)
        with self.lock(lease) as held:
            current = self.registry.alias_version(CHAMPION)
            current_version = current.version if current else None
            if current_version == new_version:
                return CasResult(outcome="already_champion", champion_version=new_version,
                                 previous_version=self.registry.aliases().get(PREVIOUS),
                                 reason=f"version {new_version} is already the champion (earlier attempt)",
                                 lock_wait_s=held.waited_s)
            if current_version != expected:
                return CasResult(
                    outcome="refused", champion_version=current_version, previous_version=None,
                    reason=(f"champion moved: it is {_fmt(current_version)} but the judge compared "
                            f"version {new_version} against {_fmt(expected)}; re-run the judge against "
                            "the current champion"),
                    lock_wait_s=held.waited_s)
            self.confirm(held)
            if current_version is not None:
                self.registry.set_alias(PREVIOUS, current_version)
            held.assert_fresh()
            self.registry.set_alias(CHAMPION, new_version)
            return CasResult(
                outcome="swapped", champion_version=new_version, previous_version=current_version,
                reason=(f"version {new_version} promoted to champion, replacing {_fmt(current_version)}"),
                lock_wait_s=held.waited_s)


def _expired(tags: dict[str, str]) -> bool:
    try:
        return time.time() > float(tags.get(LOCK_EXPIRES_TAG, "0"))
    except ValueError:  # an unreadable expiry: treat as expired rather than blocking forever
        return True


