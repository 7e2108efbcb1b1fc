"""Seeded train/val/test split by document: every pair of a document lands in the same split."""

import random
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


def split_documents(doc_ids: Iterable[str], fractions: SplitFractions, seed: int) -> dict[str, Split]:
    """doc_id -> split; the same documents, fractions and seed always give the same assignment."""
    documents = sorted(set(doc_ids))  # sorted first: the input order must not matter
    random.Random(seed).shuffle(documents)
    sizes = split_sizes(len(documents), fractions)
    assignment: dict[str, Split] = {}
    start = 0
    for split in ("test", "val", "train"):
        for doc_id in documents[start:start + sizes[split]]:
            assignment[doc_id] = split
        start += sizes[split]
    return assignment
