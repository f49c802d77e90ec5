"""The two refusal detectors (app/refusals.py) and why they differ: the narrow one decides that a
reply gets no citations, the broad one is a cue the router's fallback score and the judge use."""

from __future__ import annotations

import pytest

from app.refusals import is_not_found_reply, is_pure_refusal, is_refusal


@pytest.mark.parametrize(
    "text,narrow,broad",
    [
        ("The document does not say.", True, True),
        ("No information is given.", True, True),
        ("Cannot be determined from the text.", True, True),
        ("The figures are not included in the document.", True, True),
        ("The answer is not in the sources.", True, False),
        # Real answers with a negation: answering keeps their citations; the cue still fires.
        ("There is no evidence that the drug caused harm [1].", False, True),
        ("The author's name is unknown [2].", False, True),
        ("It is not clear whether he left.", False, True),
        # Phrasings only the broad cue knows (folded apostrophes, talk of excerpts).
        ("The document doesn\u2019t say.", False, True),
        ("The sources do not mention it.", False, True),
        ("None of the excerpts mention it.", False, True),
        ("Net loss was $1,093,095.", False, False),
        ("He never returned to the island [1].", False, False),
    ],
)
def test_narrow_reply_check_and_broad_cue(text: str, narrow: bool, broad: bool) -> None:
    assert is_not_found_reply(text) is narrow
    assert is_refusal(text) is broad


def test_a_refusal_that_guesses_is_not_pure() -> None:
    guess = "The text does not say; however, it can be inferred that it was likely a grey mare."
    assert is_refusal(guess) and not is_pure_refusal(guess)
    assert is_pure_refusal("The text does not mention any horse.")
    assert not is_refusal("x" * 400 + " The document does not say.")  # only the head is read
