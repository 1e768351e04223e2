"""Kernel regeneration at model level: the memory is really freed, and nothing else changes.

The layer tests check one involution's gradients and the tensors it hands to
autograd. These check whole RedNets: that the generated kernels are freed
after the forward (not only left out of the saved tensors), what the
allocator keeps for backward, and that gradients stay bitwise identical in
float64, under bfloat16 autocast and with gradient checkpointing.
"""
import weakref

import pytest
import torch

from mmrednet.models import Involution, RedNet
from mmrednet.utils import retained_memory


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    # Tiny models: one thread is faster, and immune to oversubscribed cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rednet(regenerate=True, **kwargs):
    torch.manual_seed(0)
    model = RedNet(depth=26, stem_kernel=7, base_channels=16, stem_channels=32,
                   involution_cfg=dict(regenerate_kernel=regenerate), **kwargs)
    return model.train()


def _set_regenerate(model, regenerate):
    for module in model.modules():
        if isinstance(module, Involution):
            module.regenerate_kernel = regenerate


def _grads(model, x):
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    sum(out.float().pow(2).mean() for out in model(x)).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def _assert_identical(grads_a, grads_b):
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _track_kernels(model):
    """Weak references to every kernel the involutions generate from now on."""
    refs = []
    for module in model.modules():
        if isinstance(module, Involution):
            generate = module._generate_kernel

            def tracked(reduced, generate=generate):
                kernel = generate(reduced)
                refs.append(weakref.ref(kernel))
                return kernel

            module._generate_kernel = tracked
    return refs


def test_backbone_gradients_identical_with_and_without_regeneration():
    model = _rednet().double()
    x = torch.randn(2, 3, 36, 34, dtype=torch.float64)
    _set_regenerate(model, False)
    before = _grads(model, x)
    _set_regenerate(model, True)
    _assert_identical(before, _grads(model, x))


def test_gradient_checkpointing_keeps_gradients_identical():
    # with_cp recomputes each block in backward, where regeneration is active
    # again inside the recomputation. Checkpointing itself changes the order
    # in which autograd sums gradients, hence only closeness against no with_cp.
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    checkpointed = _grads(_rednet(with_cp=True).double(), x)
    _assert_identical(_grads(_rednet(regenerate=False, with_cp=True).double(), x), checkpointed)
    for a, b in zip(_grads(_rednet(regenerate=False).double(), x), checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_bfloat16_autocast_gradients_identical():
    # Backward runs outside autocast: the regenerated kernel must come back
    # in bfloat16 with the forward's rounding, or gradients would differ.
    model = _rednet()
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for regenerate in (False, True):
        _set_regenerate(model, regenerate)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            grads.append(_grads(model, x))
    _assert_identical(*grads)


def test_generated_kernels_are_freed_after_forward():
    # Leaving the kernel out of the saved tensors is not enough: anything that
    # still references it (a hook closure, say) keeps the memory alive.
    model = _rednet()
    refs = _track_kernels(model)
    x = torch.randn(2, 3, 32, 32)
    for regenerate, alive in ((False, True), (True, False)):
        refs.clear()
        _set_regenerate(model, regenerate)
        out = model(x)
        assert len(refs) == 1 + 8  # stem + one per bottleneck of RedNet-26
        assert all((ref() is not None) == alive for ref in refs), regenerate
        sum(o.sum() for o in out).backward()


def test_allocator_keeps_less_by_exactly_the_kernels():
    model = _rednet()
    refs = _track_kernels(model)
    x = torch.randn(2, 3, 32, 32)
    kept, kernel_bytes = {}, 0
    for regenerate in (False, True):
        _set_regenerate(model, regenerate)
        graph = []
        kept[regenerate] = retained_memory(lambda graph=graph: graph.append(model(x)))
        if not regenerate:  # the kernels are alive here: measure them
            kernel_bytes = sum(ref().untyped_storage().nbytes() for ref in refs)
        sum(o.sum() for o in graph.pop()).backward()
    assert kernel_bytes > 0
    assert kept[False] - kept[True] == kernel_bytes


def _involution_saved_bytes(model, x):
    """Bytes of storages first saved for backward inside an involution layer."""
    stack, handles, seen, total = [], [], set(), [0]
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(lambda m, _: stack.append(m)))
        handles.append(module.register_forward_hook(lambda *_: stack.pop() and None))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen and ptr not in params:
            seen.add(ptr)
            if any(isinstance(m, Involution) for m in stack):
                total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    for handle in handles:
        handle.remove()
    sum(o.sum() for o in out).backward()
    return total[0]


def test_involution_layers_save_at_most_sixty_percent_of_before():
    model = _rednet()
    x = torch.randn(2, 3, 32, 32)
    saved = {}
    for regenerate in (False, True):
        _set_regenerate(model, regenerate)
        saved[regenerate] = _involution_saved_bytes(model, x)
    assert 0 < saved[True] <= 0.6 * saved[False]


@pytest.mark.parametrize('regenerate', [False, True])
def test_eval_and_no_grad_paths_unchanged(regenerate):
    model = _rednet(regenerate).eval()
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        outs = model(x)
    _set_regenerate(model, not regenerate)
    with torch.no_grad():
        _assert_identical(list(outs), list(model(x)))
