from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # stream_servers.py, stream_media.py

from stream_servers import rtsp_server  # noqa: E402,F401 - a fixture
