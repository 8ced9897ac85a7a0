"""Which of the synthetic corpus' clips fill which task manifest, and what each row's label is.

This is the corpus' own design (which prompts were written for which task, how clips are reused
across tasks), not what a task is: it stays here, one rule per manifest, instead of in the task
registry. A corpus for another task gets its own generator (or a rule here when it reuses these clips).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from training.corpus.plan import Clip


@dataclass(frozen=True)
class ManifestRule:
    """``sources``: the plan's prompt sources whose clips the manifest takes; ``every_train_clip``: also
    every training clip whatever its source; ``own_speaker_split``: only clips spoken by a speaker of the
    clip's own split (disjoint speakers per split); ``label``: a row's label from its clip;
    ``counted_labels``: report per-label counts in corpus.json; ``trials``: write trial lists from it."""

    sources: frozenset[str]
    label: Callable[[Clip], str | None] = lambda clip: None
    every_train_clip: bool = False
    own_speaker_split: bool = False
    counted_labels: bool = False
    trials: bool = False

    def takes(self, clip: Clip) -> bool:
        taken = clip.source in self.sources or (self.every_train_clip and clip.split == "train")
        return taken and (not self.own_speaker_split or clip.speaker.split == clip.split)


#: manifest name -> rule, in the order the corpus hash reads the manifests
MANIFESTS: dict[str, ManifestRule] = {
    "asr": ManifestRule(frozenset({"asr"}), every_train_clip=True),
    "verification": ManifestRule(frozenset({"asr", "intent"}), label=lambda clip: clip.speaker.id,
                                 own_speaker_split=True, trials=True),
    "emotion": ManifestRule(frozenset({"emotion"}), label=lambda clip: clip.emotion, counted_labels=True),
    "intent": ManifestRule(frozenset({"intent"}), label=lambda clip: clip.intent, counted_labels=True),
}
#: plan sources spoken "acted": their level follows the emotion's gain and their noise is milder
ACTED_SOURCES = frozenset({"emotion"})
