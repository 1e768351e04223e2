from .functional import involution, involution_backward, involution_fused, involution_fused_backward
from .native import library_version, op_library_path
from .reference import involution_fused_reference, involution_reference

__all__ = [
    'involution', 'involution_backward', 'involution_fused', 'involution_fused_backward',
    'involution_fused_reference', 'involution_reference', 'library_version', 'op_library_path'
]
