import random

from steps.ingest.dedup import Deduplicator, MinHasher, estimated_jaccard

_VOCABULARY = [f"wort{i}" for i in range(400)]


def _text(seed: int, words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCABULARY) for _ in range(words))


def test_exact_duplicate_points_to_the_first_document() -> None:
    dedup = Deduplicator(near_threshold=0.85)
    assert dedup.check("a", _text(1)) is None
    assert dedup.check("b", _text(2)) is None
    assert dedup.check("c", _text(1)) == ("exact", "a")


def test_near_duplicate_with_a_few_words_changed() -> None:
    original = _text(3).split()
    edited = list(original)
    edited[100], edited[200] = "geändert", "anders"
    dedup = Deduplicator(near_threshold=0.85)
    assert dedup.check("v1", " ".join(original)) is None
    assert dedup.check("v2", " ".join(edited)) == ("near", "v1")


def test_different_documents_are_kept() -> None:
    dedup = Deduplicator(near_threshold=0.85)
    assert all(dedup.check(f"d{i}", _text(100 + i)) is None for i in range(20))


def test_half_rewritten_document_is_not_a_near_duplicate() -> None:
    first = _text(4).split()
    second = first[:150] + _text(5, 150).split()
    dedup = Deduplicator(near_threshold=0.85)
    assert dedup.check("a", " ".join(first)) is None
    assert dedup.check("b", " ".join(second)) is None


def test_signatures_are_deterministic_and_estimate_jaccard() -> None:
    left, right = _text(6), " ".join(_text(6).split()[:240] + _text(7, 60).split())
    assert MinHasher().signature(left) == MinHasher().signature(left)
    estimate = estimated_jaccard(MinHasher().signature(left), MinHasher().signature(right))

    def shingles(text: str) -> set[str]:
        words = text.split()
        return {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}

    true = len(shingles(left) & shingles(right)) / len(shingles(left) | shingles(right))
    assert abs(estimate - true) < 0.12
