"""Plain-text helpers shared by the offline embedder, the extractive answerer and the cache guards.

They are deliberately simple and deterministic (no model, no download): the embedded default of
the LLM pipeline has to run anywhere, and tests have to give the same answer every time.
"""

import re

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Words that carry no meaning for retrieval or similarity. Negations are NOT here: "not" changes
# what a question asks, so it must count.
_STOP_TEXT = """
a an the is are was were be been being am do does did of to in on at by for with from as and or
if then than that this these those it its i we you they he she our your their my me us what which
who whom whose when where why how can could should would may might must will shall there here
about into over under any some all each every please tell
"""
_NEGATION_TEXT = "not no never none nothing nobody neither nor without cannot"
STOP_WORDS = frozenset(_STOP_TEXT.split())
NEGATIONS = frozenset(_NEGATION_TEXT.split())
_CONTRACTIONS = (
    ("can't", "can not"),
    ("won't", "will not"),
    ("n't", " not"),
    ("cannot", "can not"),
)


def normalise(text: str) -> str:
    """Lower-case ``text`` and spell out negating contractions ("isn't" -> "is not")."""
    lowered = text.lower().replace("\u2019", "'")
    for short, long in _CONTRACTIONS:
        lowered = lowered.replace(short, long)
    return lowered


def stem(word: str) -> str:
    """A crude suffix stripper, so that "refunds", "refunded" and "refunding" meet."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def words(text: str) -> list[str]:
    """Every word and number of ``text``, normalised, in order."""
    return _WORD.findall(normalise(text))


def content_terms(text: str) -> list[str]:
    """The stemmed words of ``text`` that carry meaning (stop words dropped, negations kept)."""
    return [stem(w) for w in words(text) if w not in STOP_WORDS]


def negation_cues(text: str) -> frozenset[str]:
    """Which negating words ``text`` uses; two questions that differ here ask different things."""
    return frozenset(w for w in words(text) if w in NEGATIONS)


def numbers(text: str) -> frozenset[str]:
    """The numbers ``text`` mentions ("over 500" and "over 5000" are different questions)."""
    return frozenset(w for w in words(text) if w[0].isdigit())


def sentences(text: str) -> list[str]:
    """Split prose into sentences (headings and list items count as their own sentence)."""
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("#-* ").strip()
        if line:
            out.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return out


def approximate_tokens(text: str) -> int:
    """Tokens of ``text`` the way OpenAI tokenizers roughly count English (4 characters each)."""
    return max(1, (len(text) + 3) // 4)
