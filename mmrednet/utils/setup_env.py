"""``register_all_modules``, as mmdet, mmseg and mmpretrain have it."""
from mmengine import registry


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register mmrednet's modules into the ``mmrednet`` registry scope.

    Importing :mod:`mmrednet.models` registers ``RedNet``, ``Involution``,
    ``InvolutionFPN`` and the involution heads. Configs of mmdet, mmseg and
    mmpretrain do not need this (their ``type='mmrednet.X'`` entries import the
    scope on demand); it is for code that builds mmrednet modules by bare name,
    e.g. ``MODELS.build(dict(type='RedNet', depth=50))`` with mmengine's root
    ``MODELS``.

    Args:
        init_default_scope (bool): Also make ``mmrednet`` the default scope
            (mmengine's ``init_default_scope``, which warns when it replaces
            another current scope). Default: True.
    """
    import mmrednet.models  # noqa: F401  (registers on import)
    if init_default_scope:
        registry.init_default_scope('mmrednet')
