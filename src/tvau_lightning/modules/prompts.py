"""The normal/abnormal text prompt bank of the AHD (paper §3.2.1, Fig. 2; SPEC §3 step 1).

Prompts are built at three levels: a *word* (an event name, "person jumping"), a *phrase* that wraps it
("surveillance video of {person jumping}") and a *sentence* that states its presence or absence ("a short
surveillance clip where {…} occurs" vs "… not occurs" / "… without …"). Every combination is one sentence;
the AHD embeds each sentence, mean-pools its tokens, and averages over the sentences of a class to get one
prototype per class (normal, abnormal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: event names of UBnormal's and ShanghaiTech's anomaly categories, plus generic words
DEFAULT_EVENTS: list[str] = [
    "anomaly",
    "abnormal event",
    "person running",
    "person jumping",
    "person falling",
    "people fighting",
    "person dancing",
    "person walking injured",
    "person stealing",
    "person jaywalking",
    "car accident",
    "vehicle in a pedestrian area",
    "car driving on the sidewalk",
    "fire",
    "smoke",
    "person riding a bicycle",
    "person riding a skateboard",
    "person riding a motorcycle",
    "person throwing an object",
    "person chasing someone",
]

DEFAULT_PHRASES: list[str] = [
    "{}",
    "surveillance video of {}",
    "a camera recording of {}",
]

DEFAULT_ABNORMAL_SENTENCES: list[str] = [
    "a short surveillance clip where {} occurs",
    "a surveillance video in which {} happens",
    "an abnormal scene with {}",
]

DEFAULT_NORMAL_SENTENCES: list[str] = [
    "a short surveillance clip where {} not occurs",
    "a short surveillance clip without {}",
    "a normal scene without {}",
]


@dataclass
class PromptBank:
    """Configurable template bank; ``sentences("abnormal")`` / ``sentences("normal")`` expand it.

    Attributes:
        events: word-level event names.
        phrases: phrase templates with one ``{}`` for the event.
        abnormal_sentences: sentence templates with one ``{}`` for the phrase, stating the event occurs.
        normal_sentences: the negated sentence templates ("not occurs", "without").
    """

    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    phrases: list[str] = field(default_factory=lambda: list(DEFAULT_PHRASES))
    abnormal_sentences: list[str] = field(default_factory=lambda: list(DEFAULT_ABNORMAL_SENTENCES))
    normal_sentences: list[str] = field(default_factory=lambda: list(DEFAULT_NORMAL_SENTENCES))

    def __post_init__(self) -> None:
        for name in ("events", "phrases", "abnormal_sentences", "normal_sentences"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"PromptBank.{name} must not be empty")
        for name in ("phrases", "abnormal_sentences", "normal_sentences"):
            for template in getattr(self, name):
                if template.count("{}") != 1:
                    raise ValueError(
                        f"PromptBank.{name} template {template!r} must contain exactly one '{{}}' placeholder"
                    )

    def sentences(self, polarity: str) -> list[str]:
        """All sentences of one class (``"normal"`` or ``"abnormal"``), in a stable order."""
        if polarity == "abnormal":
            templates = self.abnormal_sentences
        elif polarity == "normal":
            templates = self.normal_sentences
        else:
            raise ValueError(f"polarity must be 'normal' or 'abnormal', got {polarity!r}")
        return [s.format(p.format(e)) for s in templates for p in self.phrases for e in self.events]

    def class_sentences(self) -> tuple[list[str], list[str]]:
        """``(normal sentences, abnormal sentences)``; class index 0 = normal, 1 = abnormal."""
        return self.sentences("normal"), self.sentences("abnormal")
