"""Answers that say the material does not contain the answer ("The document does not say.").

Two detectors, different on purpose, for two different jobs:

- :func:`is_not_found_reply` (narrow): answering (``app.answering.modes``) uses it to decide that a
  reply *is* the prompts' not-found reply (or a close paraphrase). Such a reply gets no
  citations: RAG does not match its sentences to sources, LC returns it without any. It must
  not fire on real answers that merely contain a negation ("There is no evidence that the drug
  caused harm [1].", "The author's name is unknown [2].", "It is not clear whether he left."),
  or their citations would be dropped; so it only knows the phrasings of a refusal.
- :func:`is_refusal` and :func:`is_pure_refusal` (broad, on folded text): a *cue* that the reply
  says something is not in the text, anywhere near its start. The router's learned fallback
  score was trained on it (``ans_refused`` and ``ans_pure_refusal`` in
  ``app.routing.router.answer_features``; ``eval/router_study.py``), and the eval judge scores
  unanswerable questions with it (``eval.judge``, re-exported by ``eval.textnorm``). It must
  catch "The sources do not mention it.", curly apostrophes and "None of the excerpts ...", and
  may over-fire on real answers: the score and the judge weigh it with other evidence.

Swapping one for the other changes behaviour: the broad one in answering drops the citations
of answers like those above; the narrow one in the router changes the inputs the policy
weights were fitted on.
"""

from __future__ import annotations

import re
import unicodedata

# -- narrow: is this reply the not-found reply? (answering) ------------------------------------

_NOT_FOUND_REPLY = re.compile(
    r"(does not say|doesn't say|not (?:mentioned|stated|specified|provided|given|contain)|"
    r"no (?:information|mention)|cannot (?:be )?(?:answer|determine|found)|"
    r"can't (?:answer|determine)|unable to (?:answer|determine|find)|"
    r"(?:is|are) not (?:in|included in) the (?:sources|document|text|notes))",
    re.IGNORECASE,
)


def is_not_found_reply(answer: str) -> bool:
    """Whether the reply declines to answer because the material does not contain the answer
    (checked in its first 400 characters); answering then gives it no citations."""
    return bool(_NOT_FOUND_REPLY.search(answer[:400]))


# -- broad: does the reply say something is not in the text? (router fallback, eval judge) -----


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join("".join(ch for ch in text if not unicodedata.combining(ch)).lower().split())


_NEG = (
    r"(?:does not|doesn't|do not|don't|did not|didn't|cannot|can't|could not|couldn't|unable to|"
    r"is not|isn't|are not|aren't|was not|wasn't|were not|weren't|has not|hasn't|have not|haven't|"
    r"had not|hadn't|never|not)"
)
_VERBS = (
    r"(?:say|state|mention|provide|specify|include|contain|discuss|address|disclose|give|indicate|detail|"
    r"describe|reveal|report|offer|present|identify|find|determine|answer|know|name|propose|explain|"
    r"elaborate|outline|list|cover|explore|touch|talk|refer|clarify|suggest|show|exist|"
    r"be (?:determined|found|answered|inferred|identified)|"
    r"stated|mentioned|provided|specified|included|contained|discussed|addressed|disclosed|given|"
    r"indicated|detailed|described|revealed|reported|available|found|known|present|named|listed|"
    r"covered|explained|outlined|identified|clear|explicit|explicitly|possible to)"
)
_REFUSAL = re.compile(
    rf"\b{_NEG}\s+(?:\w+ly\s+){{0,2}}{_VERBS}\b|"
    r"\bno (?:mention|information|details?|data|indication|specific|explicit|reference|record|evidence)\b|"
    r"\bno\b[^.;]{0,60}\b(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:mentioned|stated|given|provided|specified|"
    r"named|found|described|indicated|disclosed|discussed|reported)\b|"
    r"\bthere (?:is|are|was|were) no\b|\bnot (?:enough|sufficient) information\b|\bunspecified\b|"
    r"\binsufficient information\b|\bunanswerable\b|\bi (?:could not|couldn't|cannot|can't) find\b|"
    r"\bnone of the (?:chunks|passages|excerpts|sources)\b|\bunknown\b",
    re.IGNORECASE,
)
# A refusal followed by a guess ("..., however it can be inferred that ...") is an answer.
_SPECULATION = re.compile(
    r"\b(?:however|but|although|though|that said)\b[^.]{0,80}\b(?:infer|inferred|likely|possibl\w*|may be|"
    r"might|could be|suggests?|assum\w*|speculat\w*|based on)\b|\bcan be inferred\b|\bit is likely\b|"
    r"\bpresumably\b|\bprobably\b",
    re.IGNORECASE,
)


def is_refusal(text: str, head_chars: int = 400) -> bool:
    """Whether the answer says the material does not contain the answer (checked near its start).
    Broad: a cue for the router's fallback score and the eval judge (see the module doc)."""
    return bool(_REFUSAL.search(_fold(text)[:head_chars]))


def is_pure_refusal(text: str, head_chars: int = 400) -> bool:
    """A refusal (:func:`is_refusal`) that does not go on to guess an answer anyway."""
    t = _fold(text)
    return bool(_REFUSAL.search(t[:head_chars])) and not _SPECULATION.search(t)
