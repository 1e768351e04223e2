"""A hook for subprocess tests: each rank saves its model's state dict (mmengine: rank 0 only).

Imported by the test configs through ``custom_imports`` (the repository root is
on ``PYTHONPATH`` in the launchers), registered in mmengine's root ``HOOKS``,
which the mmdet/mmseg registries fall back to.
"""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpWeightsHook(Hook):
    """Write ``rank{R}_{before,after}_train.pth``: the weights after init and after training.

    Args:
        out_dir (str): Where to write (shared by the ranks of a test on one machine).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def _dump(self, runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, osp.join(self.out_dir, f'rank{get_rank()}_{when}_train.pth'))

    def before_train(self, runner) -> None:
        self._dump(runner, 'before')

    def after_train(self, runner) -> None:
        self._dump(runner, 'after')
