"""Sphinx configuration of mmrednet's documentation (``make docs`` builds it)."""
import os
import sys

ROOT = os.path.abspath('..')
sys.path.insert(0, ROOT)  # the checkout's mmrednet, whatever is installed

from mmrednet.version import __version__  # noqa: E402

project = 'mmrednet'
author = 'mmrednet contributors'
copyright = 'mmrednet contributors'
release = version = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path = []

# Markdown: heading anchors so that `page.md#section` links resolve (and are checked).
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence']
suppress_warnings = []

# API reference: Google-style docstrings, real imports (the venv has the whole stack).
autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Nitpicky: every reference must resolve, except into packages whose docs are not
# built here (no intersphinx: the build runs offline).
nitpicky = True
nitpick_ignore_regex = [
    (r'py:.*', r'(torch|numpy|np|mmengine|mmcv|mmdet|mmseg|mmpretrain|onnx|onnxruntime|'
               r'onnxscript|argparse|collections|pathlib|os|random|typing|enum|dataclasses|pickle|_pickle)'
               r'(\..*)?'),
    # Private bases (show-inheritance) and the TypeVars (``T``) of generic helpers.
    (r'py:.*', r'mmrednet\.(.*\.)?_\w+|mmrednet\.(\w+\.)+T'),
    # Names that docstrings inherited from torch and mmengine use unqualified.
    (r'py:.*', r'Dropout|BatchNorm|FlopAnalyzer|sequence|Runner|Path|dict tuple'),
    (r'py:.*', r'(Tensor|Module|Config|ConfigDict|nn\.Module|OptConfigType|'
               r'OptMultiConfig|ConfigType|MultiConfig|InstanceList|OptInstanceList|'
               r'SampleList|OptSampleList|optional|callable|array-like)'),
]
