"""Moved to :mod:`ser.spec` (lightning-free, so inference can use it); re-exported here."""

from ser.spec import SPEC_KEY, build_net, class_path, factory_spec

__all__ = ["SPEC_KEY", "build_net", "class_path", "factory_spec"]
