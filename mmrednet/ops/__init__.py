from .functional import involution
from .reference import involution_reference

__all__ = ['involution', 'involution_reference']
