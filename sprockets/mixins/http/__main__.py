"""``python -m sprockets.mixins.http``: fetch a URL with the retrying
engine, or run ``--demo``.  See :mod:`sprockets.mixins.http._cli`."""
from __future__ import annotations

import sys

from sprockets.mixins.http import _cli

if __name__ == '__main__':
    sys.exit(_cli.main())
