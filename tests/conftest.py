"""Suite-wide settings: tests never reach the internet.

``FLIPBENCH_OFFLINE=1`` keeps ``quickstart`` (and anything else that would fetch official weights) from downloading;
tests of the download path start their own server on 127.0.0.1 and clear the variable themselves.
"""

import os

os.environ.setdefault("FLIPBENCH_OFFLINE", "1")
