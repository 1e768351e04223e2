"""mmengine checkpoints load under torch's weights_only default; nothing else opens up."""
import io
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import mmrednet  # noqa: F401  (registers the allow-list)


def test_mmengine_checkpoint_with_message_hub_loads(tmp_path):
    hub = MessageHub.get_instance('checkpoint-safety-test')
    hub.update_scalar('train/loss', np.float32(0.5))
    hub.update_scalar('train/lr', 0.02)
    hub.update_info('iter', 7)
    path = tmp_path / 'iter_7.pth'
    save_checkpoint({'meta': {'iter': 7, 'seed': np.int64(3), 'hist': np.arange(3)},
                     'state_dict': {'w': torch.ones(2)}, 'message_hub': hub.state_dict()},
                    str(path))
    checkpoint = torch.load(path)  # torch's default: weights_only=True
    assert checkpoint['meta']['iter'] == 7 and checkpoint['meta']['hist'].tolist() == [0, 1, 2]
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == pytest.approx(0.5)
    assert _load_checkpoint(str(path), map_location='cpu')['meta']['seed'] == 3


class _GetattrGadget:
    """A pickle that reaches ``getattr`` for something other than HistoryBuffer's stats."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


class _SystemGadget:

    def __reduce__(self):
        import os
        return os.system, ('true', )


@pytest.mark.parametrize('gadget,match', [(_GetattrGadget, 'refusing to unpickle getattr'),
                                          (_SystemGadget, 'system')])
def test_other_globals_stay_refused(gadget, match):
    buffer = io.BytesIO()
    torch.save({'x': gadget()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=match):
        torch.load(buffer)


def test_loads_in_a_process_that_made_no_history_buffer(tmp_path):
    """Inference-only processes have not registered mmengine's statistics yet."""
    import subprocess
    import sys
    hub = MessageHub.get_instance('checkpoint-safety-fresh')
    hub.update_scalar('loss', 1.0)
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict()}, path)
    code = ('import torch, mmrednet; '
            f'print(torch.load({str(path)!r})["message_hub"]["log_scalars"]["loss"].mean())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith('1.0')
