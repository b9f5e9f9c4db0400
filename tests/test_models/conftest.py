"""Make the test helpers next to this folder (plain_mlla.py) importable."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
