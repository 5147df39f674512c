"""LightningDataModules, one per corpus, on a shared base."""

from ser.data.base import Clip, ClipDataset, SERDataModule, collate
from ser.data.demo import DemoCorpus
from ser.data.ravdess import RAVDESS

__all__ = ["Clip", "ClipDataset", "DemoCorpus", "RAVDESS", "SERDataModule", "collate"]
