"""Hypothesis profiles shared by every test area: "ci" (default) and "thorough".

Select with ``HYPOTHESIS_PROFILE=thorough pytest ...``. Deadlines are off: the machines are
shared and noisy, and speed is measured by benchmarks, not tests.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
