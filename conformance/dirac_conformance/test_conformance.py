"""The suite as pytest tests, collected by ``pytest --pyargs dirac_conformance``.

The plugin (:mod:`dirac_conformance.plugin`) parametrizes ``dirac_job`` with one job per
backend x check x dtype from the ``--dirac-backend`` options.
"""

from typing import Any

import pytest

from dirac_conformance.plugin import Job, run_job


def test_conforms(dirac_job: Job, request: pytest.FixtureRequest, record_property: Any) -> None:
    run_job(dirac_job, request.config, record_property)
