"""The ``mmrednet`` registry scope.

A child of mmengine's root ``MODELS``, so ``type='mmrednet.RedNet'`` resolves
from mmdet and mmseg configs alike (mmengine imports ``mmrednet.registry`` for
the scope prefix, and ``locations`` imports the modules that register).
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmrednet',
                  locations=['mmrednet.models'])
