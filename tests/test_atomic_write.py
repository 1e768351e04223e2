"""Files written whole or not at all, with the permissions a new file gets."""
import os
import stat

import pytest

from mmrednet.utils.atomic_write import atomic_write


@pytest.fixture
def umask():
    """Set the process's umask for one test (pytest runs tests in one thread)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('mask', [0o022, 0o027, 0o002, 0o077])
def test_a_new_file_gets_what_open_gives(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / 'by_open', 'wb') as f:
        f.write(b'x')
    atomic_write(str(tmp_path / 'sub' / 'atomic'), lambda f: f.write(b'content'))
    assert (tmp_path / 'sub' / 'atomic').read_bytes() == b'content'
    assert _mode(tmp_path / 'sub' / 'atomic') == _mode(tmp_path / 'by_open') == 0o666 & ~mask
    assert os.listdir(tmp_path / 'sub') == ['atomic']


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    """As ``open(path, 'wb')`` (torch.save, mmengine) leaves them: the user chose them."""
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'old')
    os.chmod(path, 0o604)
    atomic_write(str(path), lambda f: f.write(b'new'))
    assert path.read_bytes() == b'new' and _mode(path) == 0o604


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'weights.pth'
    path.write_bytes(b'old')

    def fail(f):
        f.write(b'half')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        atomic_write(str(path), fail)
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['weights.pth']


def test_the_cuda_check_reports_too(tmp_path, umask):
    """Every atomic writer of the package goes through atomic_write (mkstemp gave 0o600)."""
    from mmrednet.testing import report
    umask(0o022)
    report.write_json(tmp_path / 'check.json', [report.Check('op', 'pass')])
    assert _mode(tmp_path / 'check.json') == 0o644
