from .functional import involution, involution_backward
from .native import library_version, op_library_path
from .reference import involution_reference

__all__ = [
    'involution', 'involution_backward', 'involution_reference', 'library_version',
    'op_library_path'
]
