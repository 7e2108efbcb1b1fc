"""Function words of the project's languages: the tokens that carry no content for the grounding score.

Casefolded, as `steps.common.reference_scores.tokens` yields them; the elided forms (l', d', qu', dell', 't)
appear without their apostrophe because the tokeniser splits there. Articles, pronouns, prepositions,
conjunctions and auxiliaries only: a content word wrongly listed here would hide an ungrounded answer.
"""

_WORDS = {
    "en": "a an the and or but if of to in on at by for with from as is are was were be been being has have "
          "had do does did it its this that these those there their they them he she his her we our you your "
          "i me my not no so than then which who whom what when where how can could will would shall should "
          "may might must also into about s",
    "de": "der die das den dem des ein eine einen einem einer eines und oder aber wenn weil dass als wie im in "
          "am an auf aus bei mit nach von vom zu zum zur für über unter durch gegen ohne um ist sind war waren "
          "sein wird werden wurde wurden hat haben hatte kann können muss müssen soll sollen darf dürfen es er "
          "sie ihr ihre ihren wir uns man sich nicht kein keine auch nur noch so da dies diese dieser dieses",
    "fr": "le la les l un une des du de d et ou mais si que qu qui quoi dont où à au aux en dans sur sous par "
          "pour avec sans chez entre est sont était étaient être a ont avait avoir sera seront peut peuvent "
          "doit doivent il elle ils elles on nous vous je j me m te t se s ce c cet cette ces son sa ses leur "
          "leurs ne n pas plus aussi y",
    "es": "el la los las lo un una unos unas y o pero si que quien cual cuyo donde de del al a en con sin por "
          "para sobre entre hasta desde es son era eran ser está están estar ha han había haber puede pueden "
          "debe deben se su sus le les me te nos os él ella ellos ellas no más también muy este esta estos "
          "estas ese esa",
    "it": "il lo la i gli le l un uno una un e o ma se che chi cui dove di del dello della dei degli delle d "
          "dell a al allo alla ai agli alle all da dal dalla dall in nel nello nella nei nelle nell su sul "
          "sulla sull con per tra fra è sono era erano essere ha hanno aveva avere può possono deve devono si "
          "suo sua suoi sue loro ne non più anche questo questa questi queste",
    "nl": "de het een en of maar als dat die dit deze wat wie waar hoe van in op aan bij met naar voor door "
          "over onder uit tot om te is zijn was waren wordt worden werd werden heeft hebben had kan kunnen moet "
          "moeten mag mogen zal zullen hij zij ze het wij we u je jij hun haar zich niet geen ook nog er t s",
}

FUNCTION_WORDS: dict[str, frozenset[str]] = {language: frozenset(words.split()) for language, words in _WORDS.items()}


def function_words(language: str) -> frozenset[str]:
    """The function words of `language` together with English's (answers of a small model drift into English)."""
    return FUNCTION_WORDS.get(language, frozenset()) | FUNCTION_WORDS["en"]
