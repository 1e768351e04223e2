"""Small builders shared by the tests."""
import torch

from mmrednet.ops._args import output_size


def random_problem(n=2, c=32, groups=2, size=(9, 7), kernel=3, stride=1, dilation=1,
                   padding=None, dtype=torch.float64, device='cpu', requires_grad=True):
    """An involution input and a kernel of the matching output size."""
    padding = (kernel - 1) // 2 * dilation if padding is None else padding
    out = [output_size(s, kernel, stride, padding, dilation) for s in size]
    x = torch.randn(n, c, *size, dtype=dtype, device=device, requires_grad=requires_grad)
    w = torch.randn(n, groups, *(kernel, ) * len(size), *out, dtype=dtype, device=device,
                    requires_grad=requires_grad)
    return x, w, dict(stride=stride, padding=padding, dilation=dilation)


def assert_all_passed(outcomes, launches):
    """Every one of ``launches`` sweep outcomes ran and passed (the first failures shown)."""
    assert len(outcomes) == launches
    failed = [o for o in outcomes if not o.passed]
    assert not failed, '\n'.join(map(str, failed[:10]))
