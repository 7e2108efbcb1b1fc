"""Seeded train/val/test split by document: every pair of a document lands in the same split."""

import random
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from steps.generate_qa.settings import SplitFractions

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def split_sizes(n_documents: int, fractions: SplitFractions) -> dict[Split, int]:
    """Documents per split. From 3 documents on, every split with a non-zero share gets at least one
    (the judge needs a test set even from a tiny corpus); train always keeps at least one."""
    if n_documents == 0:
        return {"train": 0, "val": 0, "test": 0}
    test = round(n_documents * fractions.test)
    val = round(n_documents * fractions.val)
    if n_documents >= 2 and fractions.test > 0:
        test = max(test, 1)
    if n_documents >= 3 and fractions.val > 0:
        val = max(val, 1)
    while test + val > n_documents - 1:  # give back from the larger held-out split first
        if val >= test and val > 0:
            val -= 1
        else:
            test -= 1
    return {"train": n_documents - test - val, "val": val, "test": test}


def split_documents(pairs: Iterable[tuple[str, bool]], fractions: SplitFractions, seed: int) -> dict[str, Split]:
    """doc_id -> split from (doc_id, answerable) per accepted pair; the same pairs, fractions and seed always
    give the same assignment.

    Stratified by document: each split gets its share of documents, and documents are dealt so that each split
    also gets close to its share of the unanswerable pairs. A plain shuffle of a small corpus can leave
    training with almost no refusal examples (seen on the demo: 3 of 11, all from one German document),
    and then no adapter learns to refuse, whatever the held-out set says."""
    refusals: Counter[str] = Counter()
    documents_seen: set[str] = set()
    for doc_id, answerable in pairs:
        documents_seen.add(doc_id)
        refusals[doc_id] += not answerable
    documents = sorted(documents_seen)  # sorted first: the input order must not matter
    random.Random(seed).shuffle(documents)
    documents.sort(key=lambda doc_id: -refusals[doc_id])  # stable: the seeded order among equals
    room = split_sizes(len(documents), fractions)
    share = {"train": fractions.train, "val": fractions.val, "test": fractions.test}
    total_refusals = sum(refusals.values())
    dealt: Counter[Split] = Counter()
    assignment: dict[str, Split] = {}
    for doc_id in documents:
        open_splits = [split for split in SPLITS if room[split] > 0]
        # The split furthest below its share of refusals; ties go to the split with the most room left.
        split = max(open_splits, key=lambda s: (share[s] * total_refusals - dealt[s], room[s]))
        assignment[doc_id] = split
        dealt[split] += refusals[doc_id]
        room[split] -= 1
    return assignment
