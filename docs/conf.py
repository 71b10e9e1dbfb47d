"""Sphinx configuration for sprockets.mixins.http."""
import datetime
import pathlib
import sys

# build from the work tree even when the package is not installed
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sprockets.mixins.http import _version

project = 'sprockets.mixins.http'
author = 'AWeber Communications'
copyright = f'2015-{datetime.date.today().year}, {author}'
release = _version.__version__
version = '.'.join(release.split('.')[:2])

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.viewcode',
]

# No intersphinx: the docs build offline.  References to the standard
# library and tornado stay literal, and the few that Sphinx cannot resolve
# are listed in nitpick_ignore below.
nitpicky = True
autodoc_typehints = 'description'
autodoc_member_order = 'bysource'
autodoc_default_options = {'show-inheritance': True}

# Targets that only intersphinx could resolve: Python's constants and
# builtins, and the classes of the libraries the API takes and returns.
nitpick_ignore = [
    ('py:data', 'None'),
    ('py:data', 'True'),
    ('py:data', 'False'),
    ('py:data', 'math.inf'),
    ('py:func', 'str'),
    ('py:class', 'enum.Enum'),
    ('py:mod', 'sprockets.mixins.mediatype'),
    ('py:class', 'ietfparse.datastructures.ContentType'),
    # the return type of tornado's AsyncHTTPClient.__new__, which
    # autodoc shows for AiohttpAsyncHTTPClient, unqualified
    ('py:class', 'AsyncHTTPClient'),
]
nitpick_ignore_regex = [
    ('py:class', r'tornado\.[a-z_]+\.[A-Za-z]+'),
    ('py:class', r'httputil\.[A-Za-z]+'),
]

exclude_patterns = ['_build']
html_theme = 'alabaster'
html_static_path: list = []
