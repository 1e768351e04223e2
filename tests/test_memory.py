"""Training memory at model level: what is not kept is really freed, and nothing else changes.

The layer tests check one involution's gradients and the tensors it hands to
autograd. These check whole RedNets: that no generated kernel exists in a
training step (the layers run the fused op), that the allocator keeps less by
exactly what the involutions and the stem saved otherwise, that gradients
stay bitwise identical in float64 and under bfloat16 autocast, and that
recomputation never updates BN's running statistics twice.
"""
import pytest
import torch

from mmrednet.models import Involution, RedNet
from mmrednet.utils import retained_memory, saved_bytes_inside

from .op_recorder import OpRecorder


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    # Tiny models: one thread is faster, and immune to oversubscribed cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rednet(regenerate=True, recompute_stem=True, **kwargs):
    torch.manual_seed(0)
    model = RedNet(depth=26, stem_kernel=7, base_channels=16, stem_channels=32,
                   recompute_stem=recompute_stem,
                   involution_cfg=dict(regenerate_kernel=regenerate), **kwargs)
    return model.train()


def _set_regenerate(model, regenerate):
    for module in model.modules():
        if isinstance(module, Involution):
            module.regenerate_kernel = regenerate


def _loss(outs):
    return sum(out.float().pow(2).mean() for out in outs)


def _grads(model, x):
    model.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    _loss(model(x)).backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def _assert_identical(tensors_a, tensors_b):
    assert len(tensors_a) == len(tensors_b)
    for a, b in zip(tensors_a, tensors_b, strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_backbone_gradients_identical_with_and_without_saving():
    x = torch.randn(2, 3, 36, 34, dtype=torch.float64)
    kept = _grads(_rednet(regenerate=False, recompute_stem=False).double(), x)
    _assert_identical(kept, _grads(_rednet().double(), x))


def test_gradient_checkpointing_keeps_gradients_identical():
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    kept = _grads(_rednet(regenerate=False, recompute_stem=False).double(), x)
    _assert_identical(kept, _grads(_rednet(with_cp=True).double(), x))


@pytest.mark.parametrize('with_cp', [False, True])
def test_recomputation_updates_running_statistics_once(with_cp):
    # Every recomputation (kernel branch, stem, checkpointed blocks) runs BN in
    # training mode again; the statistics must still see each batch once.
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    models = [_rednet(regenerate=False, recompute_stem=False).double(),
              _rednet(with_cp=with_cp).double()]
    for model in models:
        for _ in range(2):
            _grads(model, x)
    _assert_identical(*(list(model.buffers()) for model in models))
    assert int(models[1].stem[0].bn.num_batches_tracked) == 2


def test_bfloat16_autocast_gradients_identical():
    # Backward runs outside autocast: the regenerated kernel must come back
    # in bfloat16 with the forward's rounding, or gradients would differ.
    x = torch.randn(2, 3, 32, 32)
    grads = []
    for saving in (False, True):
        model = _rednet(regenerate=saving, recompute_stem=saving)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            grads.append(_grads(model, x))
    _assert_identical(*grads)


@pytest.mark.parametrize('regenerate', [False, True])
def test_no_generated_kernel_exists_in_a_training_step(regenerate):
    # The involutions run the fused op: no op of the step reads or writes a
    # tensor with a kernel's G*K*K channels (the span weights aside).
    model = _rednet(regenerate=regenerate, recompute_stem=False)
    span_channels = {m.groups * m.kernel_size[0] * m.kernel_size[1]
                     for m in model.modules() if isinstance(m, Involution)}
    with OpRecorder() as recorder:
        _loss(model(torch.randn(2, 3, 32, 32))).backward()
    assert 'mmrednet::involution_fused_grad_span' in recorder.names()
    assert 'mmrednet::involution' not in recorder.names()
    for t in recorder.tensors():
        assert t.dim() < 3 or t.shape[1] not in span_channels or t.shape[0] in span_channels, \
            tuple(t.shape)


def _kept_and_saved_inside(model, x, inside):
    """Bytes the allocator keeps for backward, and bytes saved inside ``inside`` modules."""
    graph = []
    kept = retained_memory(lambda: graph.append(model(x)))
    _loss(graph.pop()).backward()
    saved, out = saved_bytes_inside(model, lambda: model(x), inside, inputs=[x])
    _loss(out).backward()
    return kept, saved


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)])
def test_allocator_keeps_less_by_exactly_what_the_involutions_saved(device):
    # On CUDA (tools/check_cuda.py runs it) the caching allocator rounds each block
    # up to 512 bytes, so there the difference is close, not exact (a larger input
    # keeps the rounding of the small norm statistics under a few percent).
    model = _rednet(recompute_stem=False).to(device)
    size = 32 if device == 'cpu' else 64
    x = torch.randn(2, 3, size, size, device=device)
    kept, saved = {}, {}
    for regenerate in (False, True):
        _set_regenerate(model, regenerate)
        kept[regenerate], saved[regenerate] = _kept_and_saved_inside(
            model, x, lambda m: isinstance(m, Involution))
    # Before: each kernel and its branch's norm input, statistics and activation.
    assert saved[False] > 0 and saved[True] == 0
    rel = 0.05 if device == 'cuda' else 0
    assert kept[False] - kept[True] == pytest.approx(saved[False], rel=rel, abs=0)


def test_stem_recomputation_frees_exactly_the_stem_activations():
    model = _rednet()
    x = torch.randn(2, 3, 32, 32)
    model.recompute_stem = False
    kept_before, stem_saved = _kept_and_saved_inside(
        model, x, lambda m: m is model.stem or m is model.maxpool)
    model.recompute_stem = True
    kept_after, _ = _kept_and_saved_inside(model, x, lambda m: False)
    # All but the RNG state that checkpointing keeps to replay random ops.
    assert stem_saved > 0
    assert kept_before - kept_after == stem_saved - torch.get_rng_state().nbytes


def test_frozen_stem_is_not_recomputed():
    model = _rednet(frozen_stages=0)
    x = torch.randn(2, 3, 32, 32)
    calls = []
    model.stem.register_forward_hook(lambda *_: calls.append(1))
    _loss(model(x)).backward()
    assert len(calls) == 1
    assert all(p.grad is None for p in model.stem.parameters())


@pytest.mark.parametrize('saving', [False, True])
def test_eval_and_no_grad_paths_unchanged(saving):
    model = _rednet(regenerate=saving, recompute_stem=saving).eval()
    x = torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        outs = model(x)
    _set_regenerate(model, not saving)
    model.recompute_stem = not saving
    with torch.no_grad():
        _assert_identical(list(outs), list(model(x)))
