"""Ticket sentiment: scored by sentence, read as a whole."""

from vaderSentiment.vaderSentiment import BOOSTER_DICT, SPECIAL_CASES, SentimentIntensityAnalyzer

from gateway.sentiment import _Analyzer, sentiment
from tests.conftest import CORPORA


def test_one_sentence_scores_as_vader_does():
    text = "The export fails again and I am furious."
    assert sentiment(text) == round(SentimentIntensityAnalyzer().polarity_scores(text)
                                    ["compound"], 4)


def test_more_angry_sentences_read_angrier_than_one():
    one = sentiment("The export fails.", "This is terrible.")
    three = sentiment("The export fails.",
                      "This is terrible. I am furious. Worst support ever.")
    assert three < one < 0


def test_a_long_mail_keeps_its_tone_past_its_first_lines():
    calm = "We use the invoice export every morning for the accounts team.\n" * 60
    assert sentiment("Export", calm + "This is awful and I am angry.") < 0
    assert sentiment("Export", calm + "Thank you, this is wonderful!") > 0


def test_text_without_words_is_neutral():
    assert sentiment("", "1234 ... 42") == 0.0


IDIOMS = ("I am not happy", "never so good", "without doubt the best", "it is kind of bad",
          "the service was the bomb", "you really cut the mustard", "hand to mouth again",
          "this isn't great at all", "not bad, but not good either", "at least it works",
          "the least helpful answer", "no problem at all", "no, it is not broken",
          "sort of ok", "I don't hate it", "never this bad", "BAD support, truly AWFUL",
          "not the worst, but close", "this is yeah right good", "it's a back handed thanks")


def test_the_windowed_checks_score_exactly_as_vader():
    """Our analyzer hands VADER's negation and idiom checks only the words they read: every
    score must be the library's own, to the last digit."""
    import random

    rng = random.Random(5)
    words = [w for text in IDIOMS for w in text.split()] + [
        "refund", "late", "terrible", "thanks", "great", "printer", "very", "extremely", "not"]
    texts = list(IDIOMS) + [" ".join(rng.choices(words, k=rng.randint(1, 40)))
                            for _ in range(1500)]
    for idiom in [*SPECIAL_CASES, *BOOSTER_DICT]:  # each where the checks look for it
        texts += [f"{lead} {idiom} {tail}" for lead in ("", "so", "well you know", "I said not")
                  for tail in ("", "today", "for real now")]
    if CORPORA.is_dir():
        texts += [p.read_bytes().decode("utf-8", "replace")[:3000]
                  for p in sorted(CORPORA.rglob("*.txt"))[:300]]
    ours, theirs = _Analyzer(), SentimentIntensityAnalyzer()
    for text in texts:
        assert ours.polarity_scores(text) == theirs.polarity_scores(text), text
