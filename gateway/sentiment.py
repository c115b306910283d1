"""A local sentiment score of a ticket's words (VADER: no network, no model download)."""

from __future__ import annotations

from functools import cache

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


@cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def sentiment(*texts: str) -> float:
    """VADER's compound score, from -1 (angry) to +1 (happy); long bodies are cut to 5,000 chars."""
    text = "\n".join(t for t in texts if t)[:5000]
    if not text.strip():
        return 0.0
    return round(_analyzer().polarity_scores(text)["compound"], 4)
