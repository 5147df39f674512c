"""LightningDataModules, one per corpus, on a shared base."""

from ser.data.aesdd import AESDD
from ser.data.base import Clip, ClipDataset, SERDataModule, collate
from ser.data.crema_d import CREMAD
from ser.data.demo import DemoCorpus
from ser.data.emodb import EmoDB
from ser.data.folder import FolderCorpus
from ser.data.manifest import ManifestCorpus
from ser.data.pooled import Pooled
from ser.data.ravdess import RAVDESS
from ser.data.savee import SAVEE
from ser.data.tess import TESS

__all__ = [
    "AESDD", "CREMAD", "Clip", "ClipDataset", "DemoCorpus", "EmoDB", "FolderCorpus",
    "ManifestCorpus", "Pooled", "RAVDESS", "SAVEE", "SERDataModule", "TESS", "collate",
]  # fmt: skip
