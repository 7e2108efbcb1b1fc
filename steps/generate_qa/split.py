"""Seeded train/val/test split by document: every pair of a document lands in the same split."""

import random
from collections import Counter
from collections.abc import Iterable

from steps.common.qa_dataset import SPLITS, Split
from steps.generate_qa.settings import SplitFractions


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


def split_documents(pairs: Iterable[tuple[str, str, bool]], fractions: SplitFractions, seed: int
                    ) -> dict[str, Split]:
    """doc_id -> split from (doc_id, language, answerable) per accepted pair; the same pairs, fractions and
    seed always give the same assignment.

    Stratified by document: each split gets its share of documents, and documents are dealt so that each split
    also gets close to its share of the unanswerable pairs of each language, then of all of them. A plain
    shuffle of a small corpus can leave training with almost no refusal examples (seen on the demo: 3 of 11,
    all from one German document), and dealing without languages put every French refusal in the test split:
    an adapter that never saw a French refusal is then tested on three."""
    refusals: dict[str, Counter[str]] = {}
    for doc_id, language, answerable in pairs:
        refusals.setdefault(doc_id, Counter())[language] += not answerable
    documents = sorted(refusals)  # sorted first: the input order must not matter
    random.Random(seed).shuffle(documents)
    documents.sort(key=lambda doc_id: -refusals[doc_id].total())  # stable: the seeded order among equals
    room = split_sizes(len(documents), fractions)
    share = {"train": fractions.train, "val": fractions.val, "test": fractions.test}
    by_language = sum(refusals.values(), Counter())
    dealt: dict[Split, Counter[str]] = {split: Counter() for split in SPLITS}
    assignment: dict[str, Split] = {}
    for doc_id in documents:
        own = refusals[doc_id]
        open_splits = [split for split in SPLITS if room[split] > 0]

        def deficit(split: Split) -> tuple[float, float, int]:
            # Below its share of this document's refusal languages, then of all refusals; then the most room.
            in_languages = sum(share[split] * by_language[lang] - dealt[split][lang] for lang in own if own[lang])
            overall = share[split] * by_language.total() - dealt[split].total()
            return in_languages, overall, room[split]

        split = max(open_splits, key=deficit)
        assignment[doc_id] = split
        dealt[split].update(own)
        room[split] -= 1
    return assignment
