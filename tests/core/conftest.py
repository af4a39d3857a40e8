import sys
from pathlib import Path

# Lets the test modules import core_helpers under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))
