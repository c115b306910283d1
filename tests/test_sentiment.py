"""Ticket sentiment: scored by sentence, read as a whole."""

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from gateway.sentiment import sentiment


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
