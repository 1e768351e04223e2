from .backbones import RedNet
from .dense_heads import InvolutionRPNHead
from .layers import Involution, Involution1d
from .necks import InvolutionFPN
from .roi_heads import InvolutionFCNMaskHead

__all__ = ['Involution', 'Involution1d', 'InvolutionFCNMaskHead', 'InvolutionFPN',
           'InvolutionRPNHead', 'RedNet']

# Configs import this package (custom_imports): register the paddleclas:// checkpoint scheme.
from ..converters import paddleclas_scheme  # noqa: E402, F401
