"""Shared pieces of the CuPy backend's tests (tests/cupy).

The GPU tests need CuPy and a CUDA device; everything else runs on any machine.
"""

import sys
from pathlib import Path

# Lets the test modules import cupy_cases under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))
