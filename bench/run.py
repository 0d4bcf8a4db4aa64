#!/usr/bin/env python
"""The artifact_bus benchmark harness: `python bench/run.py --help`. The code is the package bench/abbench/."""

import sys

from abbench.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
