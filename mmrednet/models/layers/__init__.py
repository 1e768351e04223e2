from .involution import Involution, Involution1d

__all__ = ['Involution', 'Involution1d']
