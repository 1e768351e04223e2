from .functional import involution, involution_backward
from .reference import involution_reference

__all__ = ['involution', 'involution_backward', 'involution_reference']
