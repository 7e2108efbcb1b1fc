"""Exact duplicates by sha256, near duplicates by MinHash over word shingles with LSH banding.

Small, pure Python and deterministic: the permutations come from a fixed seed and the hash of a
shingle is blake2b (Python's own `hash()` is salted per process). The first document seen wins, and
documents are seen in corpus order, so the same corpus always keeps the same documents.
"""

import hashlib
import random
import re
from collections import defaultdict

_MERSENNE = (1 << 61) - 1
_WORDS = re.compile(r"\w+")
SHINGLE_WORDS = 5
# 16 bands of 8 rows: a pair with Jaccard 0.85 becomes a candidate with probability ~0.99, one at 0.5
# with ~0.06; candidates are then confirmed on the full signature against the threshold.
_BANDS, _ROWS = 16, 8


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _shingles(text: str) -> set[str]:
    words = _WORDS.findall(text.lower())
    if len(words) <= SHINGLE_WORDS:
        return {" ".join(words)}
    return {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


class MinHasher:
    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self._perms = [(rng.randrange(1, _MERSENNE), rng.randrange(0, _MERSENNE))
                       for _ in range(_BANDS * _ROWS)]

    def signature(self, text: str) -> tuple[int, ...]:
        hashes = [int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "big")
                  for s in _shingles(text)]
        return tuple(min((a * h + b) % _MERSENNE for h in hashes) for a, b in self._perms)


def estimated_jaccard(left: tuple[int, ...], right: tuple[int, ...]) -> float:
    return sum(x == y for x, y in zip(left, right, strict=True)) / len(left)


class Deduplicator:
    """Remembers the documents kept so far; says whether a new one repeats one of them."""

    def __init__(self, near_threshold: float, seed: int = 0) -> None:
        self._threshold = near_threshold
        self._hasher = MinHasher(seed)
        self._by_sha: dict[str, str] = {}
        self._signatures: dict[str, tuple[int, ...]] = {}
        self._buckets: defaultdict[tuple[int, tuple[int, ...]], list[str]] = defaultdict(list)

    def check(self, key: str, text: str) -> tuple[str, str] | None:
        """("exact" | "near", key of the kept original) for a duplicate; None (and remembered) otherwise."""
        digest = sha256_text(text)
        if digest in self._by_sha:
            return "exact", self._by_sha[digest]
        signature = self._hasher.signature(text)
        bands = [(band, signature[band * _ROWS:(band + 1) * _ROWS]) for band in range(_BANDS)]
        candidates = sorted({other for band in bands for other in self._buckets.get(band, [])})
        for other in candidates:
            if estimated_jaccard(signature, self._signatures[other]) >= self._threshold:
                return "near", other
        self._by_sha[digest] = key
        self._signatures[key] = signature
        for band in bands:
            self._buckets[band].append(key)
        return None
