# The demos' backbone: a narrow RedNet-26 (stage widths 64/128/256/512 instead
# of 256..2048) trained from scratch with RedNet's Kaiming init. The demo
# configs inherit this file and write
#   model = dict(backbone=dict(**_base_.rednet26_tiny, out_indices=...))
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

rednet26_tiny = dict(
    _delete_=True,  # no option of the base's ResNet carries over
    type='mmrednet.RedNet',
    depth=26,
    stem_channels=32,
    base_channels=16,
    stem_kernel=7,
    norm_cfg=dict(type='BN', requires_grad=True),
    init_cfg=None)
