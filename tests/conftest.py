"""Suite-wide settings.

Property and fuzz tests (hypothesis, schemathesis) explore at random on a developer's machine, where a new
counterexample is welcome; under CI they replay the same examples every run, so a submission is judged by
its code, not by the luck of the draw.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
