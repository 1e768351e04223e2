"""mmrednet: involution and RedNet for the OpenMMLab ecosystem."""
from .ops import involution, involution_reference
from .utils import allow_mmengine_checkpoints
from .version import __version__

# mmengine's checkpoint loaders (resume, load_from, Pretrained) read mmengine's
# checkpoints under weights_only=True; torch's process-wide allow-list is untouched.
allow_mmengine_checkpoints()

__all__ = ['__version__', 'involution', 'involution_reference']
