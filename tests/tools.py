"""Run the scripts under tools/ as the command lines they are, in this process.

The one way tests reach a script: no test imports one or puts ``tools/`` on
``sys.path`` (tests/test_import_graph.py checks). What a test needs of a
script's logic lives in the package and is imported from there.
"""
import glob
import json
import os.path as osp
import runpy
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(relpath: str, *argv) -> int:
    """Run ``tools/<relpath>`` as ``python tools/<relpath> ARGV...`` would, in this process.

    Args:
        relpath (str): The script's path under ``tools/``, e.g. ``'train.py'``.
        *argv: Its command-line arguments (each turned into ``str``).

    Returns:
        int: The exit status: 0 when the script returns, else its ``SystemExit``
        code; a message (``sys.exit('error: ...')``) is printed to stderr and
        gives 1, as the interpreter does. Other exceptions propagate.
    """
    path = osp.join(ROOT, 'tools', relpath)
    saved_argv = sys.argv
    sys.argv = [path, *map(str, argv)]
    try:
        runpy.run_path(path, run_name='__main__')
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
    return 0


def logged_metrics(work_dir: str) -> dict:
    """The metrics the last ``tools/test.py --work-dir work_dir`` run logged.

    mmengine's LoggerHook writes them to ``<work_dir>/<timestamp>/<timestamp>.json``.
    """
    log = max(glob.glob(osp.join(str(work_dir), '*', '*.json')))
    with open(log) as f:
        logged = json.load(f)
    return {key: value for key, value in logged.items() if key not in ('time', 'data_time')}
