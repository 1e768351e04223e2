"""The ``mmrednet`` registry scope.

Children of mmengine's root registries, so ``type='mmrednet.RedNet'`` or
``type='mmrednet.PreemptionHook'`` resolves from mmdet, mmseg and mmpretrain
configs alike (mmengine imports ``mmrednet.registry`` for the scope prefix, and
``locations`` imports the modules that register).
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmrednet',
                  locations=['mmrednet.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmrednet',
                 locations=['mmrednet.engine'])
