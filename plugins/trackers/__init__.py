"""Multi-object trackers, registered in ``TRACKERS`` by name; ``trackers`` is imported on start()."""

from . import bytetrack  # noqa: F401  (registers "bytetrack")
