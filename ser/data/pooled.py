"""Several corpora in one run: each keeps its layout, speakers and split rules; one label space.

::

    data:
      class_path: ser.data.Pooled
      init_args:
        corpora:
          - {class_path: ser.data.RAVDESS, init_args: {root: path/to/RAVDESS}}
          - {class_path: ser.data.CREMAD, init_args: {root: path/to/CREMA-D}}
        classes: intersection     # or union
        merge: {calm: neutral}    # applied to every corpus's classes first
        weights: {ravdess: 1, cremad: 1}   # each corpus's share of a training epoch
        test_corpus: null         # a name: leave that corpus out of training, test on all of it
        train_corpora: null       # names: train on these alone, test on all clips of the others

A clip's speaker becomes ``<corpus>/<speaker>`` (speakers of two corpora never merge) and batches
carry the corpus name, so validation and test log UAR, accuracy and F1 per corpus beside the pooled
figures (``val/uar/ravdess``...), and the test report holds them too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch

from ser.data.base import SERDataModule
from ser.data.dataset import Clip, ClipDataset
from ser.data.emotions import EMOTIONS, canonical, resolve_classes
from ser.errors import SERError
from ser.spec import class_path

#: Separates the corpora of a pooled model's checkpoint ``corpus`` entry.
CORPUS_SEPARATOR = "+"
log = logging.getLogger("ser")

#: A corpus name in a pool (a metric key part).
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def corpus_name(corpus: SERDataModule) -> str:
    """The default name of a corpus in a pool: its class name in lower case (``ravdess``)."""
    return type(corpus).__name__.lower()


def named(clip: Clip) -> Clip:
    """The clip with its speaker id prefixed by its corpus (``ravdess/01``): distinct in a pool."""
    return replace(clip, speaker=f"{clip.corpus}/{clip.speaker}")


class Pooled(SERDataModule):
    """Several corpora pooled into one label space, split corpus by corpus.

    Each corpus is a DataModule of its own (root, layout, ``split``, ``emotions``/``merge``,
    ``cache``, ``verify``, ``download``); the audio and loader settings (sample rate, clip length,
    front-end, noise reduction, augmentation, batch size, workers) are the pool's and replace
    theirs.

    Args:
        corpora: the corpora, each as ``class_path``/``init_args`` (e.g. ``ser.data.RAVDESS``).
        names: a name per corpus (lower case letters, digits, ``_``, ``-``) for the per-corpus
            metrics, ``weights`` and ``test_corpus``; default: the class names in lower case.
        classes: the label space: ``intersection`` (the classes every corpus has) or ``union``
            (every class of any corpus), after ``merge``; ``emotions`` picks from it.
        weights: each corpus's share of a training epoch, e.g. ``{ravdess: 1, cremad: 1}`` for
            half and half (clips drawn with replacement); ``None``: every training clip once per
            epoch, so corpora weigh by their size.
        test_corpus: leave-one-corpus-out: this corpus is not trained or validated on and all of
            its clips are the test split; the other corpora's test splits are not used.
        train_corpora: cross-corpus testing: train and validate on these corpora only; every clip
            of each other corpus is test data, beside the trained corpora's own test splits, so
            one run gives a row of the train -> test matrix (``ser cv --protocol matrix``).
        roots: each named corpus's folder, replacing the ``root`` of its entry in ``corpora``
            (``--data.roots '{ravdess: PATH, emodb: PATH}'`` with a committed pool config).
        All other arguments are those of :class:`SERDataModule` (``emotions`` and ``merge`` apply
        to the pooled classes).
    """

    SOURCE = "the corpora it pools"
    LAYOUT = "one corpus per entry of --data.corpora, each in its own layout"

    def __init__(
        self,
        corpora: list[SERDataModule],
        names: list[str] | None = None,
        classes: Literal["intersection", "union"] = "intersection",
        weights: dict[str, float] | None = None,
        test_corpus: str | None = None,
        train_corpora: list[str] | None = None,
        roots: dict[str, str] | None = None,
        emotions: list[str] | None = None,
        merge: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        if len(corpora) < 2:
            raise SERError(f"--data.corpora: pool at least two corpora, got {len(corpora)}")
        names = list(names) if names is not None else [corpus_name(c) for c in corpora]
        bad = [n for n in names if not NAME.match(n)]
        if len(names) != len(corpora) or bad or len(set(names)) != len(names):
            raise SERError(
                f"--data.names {names}: one distinct name per corpus ({len(corpora)}), of lower "
                "case letters, digits, _ and -" + ("; pass --data.names for two corpora of one "
                "class" if len(set(names)) != len(names) else "")
            )  # fmt: skip
        self.corpora = dict(zip(names, corpora, strict=True))
        unknown = sorted(set(roots or {}) - set(names))
        if unknown:
            raise SERError(f"--data.roots names {unknown}, not corpora of the pool {names}")
        for name, root in (roots or {}).items():
            self.corpora[name].root = Path(root).expanduser()
        if test_corpus is not None and test_corpus not in self.corpora:
            raise SERError(f"--data.test_corpus {test_corpus!r} is not one of {names}")
        self.test_corpus = test_corpus
        if train_corpora is not None:
            unknown = [n for n in train_corpora if n not in self.corpora]
            if not train_corpora or unknown or test_corpus is not None:
                raise SERError(
                    f"--data.train_corpora {list(train_corpora)}: a non-empty list of corpora "
                    f"among {names}" + (", without --data.test_corpus" if test_corpus else "")
                )
        #: The corpora trained on (all of them unless ``train_corpora`` or ``test_corpus``).
        self.train_corpora = (
            list(train_corpora) if train_corpora is not None
            else [n for n in names if n != test_corpus]
        )  # fmt: skip
        if weights is not None and (set(weights) - set(names) or min(weights.values()) <= 0):
            raise SERError(
                f"--data.weights {weights}: positive weights of corpora among {names} (a corpus "
                "not named weighs 1)"
            )
        self.weights = None if weights is None else {n: weights.get(n, 1.0) for n in names}
        # The pool's label space, from each corpus's classes after the pool's merge.
        own = [set(resolve_classes(tuple(c.class_names), None, merge)[0]) for c in corpora]
        shared = set.intersection(*own) if classes == "intersection" else set.union(*own)
        available = [e for e in EMOTIONS if e in shared]
        if emotions is not None:
            missing = [e for e in emotions if canonical(e) not in shared]
            if missing:
                raise SERError(
                    f"--data.emotions {missing}: not in the pool's {classes} of classes "
                    f"{available}" + ("; try --data.classes union" if classes == "intersection"
                                      else "")
                )  # fmt: skip
        if not available:
            raise SERError(
                f"the corpora {names} share no class; use --data.classes union or --data.merge"
            )
        # Every corpus class (before the pool's merge) the base class maps onto a pooled class.
        self.EMOTIONS = tuple(e for e in EMOTIONS if any(e in c.class_names for c in corpora))
        super().__init__(root=None, emotions=emotions or available, merge=merge, **kwargs)
        for corpus in corpora:  # the corpora decode at the pool's rate, with its noise reduction
            corpus.sample_rate, corpus.pipeline = self.sample_rate, self.pipeline

    @property
    def corpus(self) -> str:
        """The pooled corpora's classes, ``+``-joined: a test on any of them is in-corpus."""
        return CORPUS_SEPARATOR.join(
            dict.fromkeys(class_path(type(c)) for c in self.corpora.values())
        )

    @property
    def corpus_names(self) -> list[str]:
        return list(self.corpora)

    def prepare_data(self) -> None:
        for corpus in self.corpora.values():
            corpus.prepare_data()

    def clips(self) -> list[Clip]:
        """Every corpus's clips of the pooled classes, speakers and corpus named."""
        return [named(c) for name in self.corpora for c in self.corpus_clips(name)]

    def speaker_gender(self, speaker: str) -> str | None:
        """The gender of a pooled speaker (``<corpus>/<speaker>``) from its corpus's metadata."""
        name, _, own = speaker.partition("/")
        corpus = self.corpora.get(name)
        return None if corpus is None else corpus.speaker_gender(own)

    def corpus_clips(self, name: str, scanned: list[Clip] | None = None) -> list[Clip]:
        """Corpus ``name``'s clips of the pooled classes, with its own speaker ids (its split rules
        name them), scanned again if ``scanned`` is not given."""
        corpus = self.corpora[name]
        kept = [c for c in corpus.select(scanned if scanned is not None else
                                         corpus.scan(corpus.check_root()))
                if corpus._emotion_to_class[c.emotion] in self._emotion_to_class]  # fmt: skip
        if not kept:
            raise SERError(f"corpus {name!r} has no clips of the pooled classes {self.class_names}")
        return [replace(c, corpus=name) for c in kept]

    def label(self, clip: Clip) -> int:
        emotion = self.corpora[clip.corpus]._emotion_to_class[clip.emotion]
        return self.class_names.index(self._emotion_to_class[emotion])

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.prepare_data()
        parts: dict[str, tuple[list[torch.Tensor], list[int], list[Clip]]] = {
            s: ([], [], []) for s in ("train", "val", "test")
        }
        for name, corpus in self.corpora.items():
            scanned = corpus.scan(corpus.check_root())
            if corpus.verify_files:
                corpus.verify(scanned)
            corpus.warn_speaker_variants([c.speaker for c in scanned])
            kept, waves = corpus.usable(self.corpus_clips(name, scanned))
            labels = [self.label(c) for c in kept]
            if name not in self.train_corpora:  # a corpus only tested on: all of its clips
                split = {"train": [], "val": [], "test": list(range(len(kept)))}
            else:
                split = corpus.make_split(kept, labels)
                if self.test_corpus is not None:
                    split["test"] = []
            for stage_name, index in split.items():
                for i in index:
                    for part, value in zip(parts[stage_name], (waves[i], labels[i], named(kept[i])),
                                           strict=True):  # fmt: skip
                        part.append(value)
        for name, (waves, labels, clips) in parts.items():
            self.datasets[name] = ClipDataset(
                waves, labels, clips, self.crop_samples(), train=name == "train",
                crop_positions=self.crop_positions,
            )  # fmt: skip
        self.check_split()
        self.finish_setup()
        log_split = "; ".join(
            f"{s} " + ", ".join(f"{n} {sum(c.corpus == n for c in d.clips)}" for n in self.corpora)
            for s, d in self.datasets.items()
        )
        log.info("Pooled: %d classes %s; %s", self.n_classes, self.compared_classes, log_split)

    def check_split(self) -> None:
        """Each corpus's part of each held-out fold is checked on its own: its figures are
        reported per corpus (``test/uar/<corpus>``), so a tiny part is as meaningless as a tiny
        fold."""
        for stage in ("test", "val"):
            data = self.datasets.get(stage)
            for name in self.corpora if data is not None else ():
                part = [i for i, c in enumerate(data.clips) if c.corpus == name]
                self.check_fold(stage, [data.labels[i] for i in part],
                                [data.clips[i] for i in part], f" of {name}")  # fmt: skip

    def clip_weights(self, clips: list[Clip]) -> list[float] | None:
        """Each training clip's chance of being drawn: its corpus's weight over its clip count."""
        if self.weights is None:
            return None
        counts: dict[str, int] = {}
        for clip in clips:
            counts[clip.corpus] = counts.get(clip.corpus, 0) + 1
        return [self.weights[c.corpus] / counts[c.corpus] for c in clips]

    def check_root(self) -> Path:
        raise SERError("Pooled has no root of its own; each corpus in --data.corpora has one")
