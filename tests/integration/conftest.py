"""Integration-test fixtures: everything lives in harness/plugin.py.

Run: cd tests/integration && MAILRING_BUILD=/abs/build \
         /usr/bin/python3 -m pytest -q -p no:cacheprovider .
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness.plugin import *  # noqa: E402,F401,F403  (fixtures and hooks)
