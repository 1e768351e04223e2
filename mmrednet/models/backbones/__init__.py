from .rednet import RedNet

__all__ = ['RedNet']
