"""Layers that ``torch.export`` cannot keep shape-generic, rewritten as equivalent ones.

The exporter exports a rewritten copy and checks it against the original model.
"""
import copy

from torch import nn


def _rewrite_mmseg_upsample(model: nn.Module) -> None:
    """mmseg's ``Upsample`` computes its size as ``int(size * scale_factor)``: export
    turns that into the traced size, and at any other input size the FPN head's
    levels would be resized wrongly (no error, wrong logits). ``nn.Upsample`` with
    the same integral factor gives identical results and stays symbolic.
    """
    try:
        from mmseg.models.utils import Upsample
    except ImportError:
        return
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if (isinstance(child, Upsample) and child.size is None
                    and isinstance(child.scale_factor, (int, float))
                    and float(child.scale_factor).is_integer()):
                setattr(parent, name, nn.Upsample(scale_factor=child.scale_factor,
                                                  mode=child.mode,
                                                  align_corners=child.align_corners))


def export_friendly(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with the rewrites applied (the original is untouched)."""
    model = copy.deepcopy(model)
    _rewrite_mmseg_upsample(model)
    return model
