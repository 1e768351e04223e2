from .backbones import RedNet
from .layers import Involution, Involution1d
from .necks import InvolutionFPN

__all__ = ['Involution', 'Involution1d', 'InvolutionFPN', 'RedNet']
