"""Face detectors with 5 landmarks, registered in ``DETECTORS`` by name.

Importing this package registers them and stays cheap: ``yunet`` (and ``yunet_roi``) imports yuface and
``retinaface`` imports torch only when a detector starts.
"""

from . import retinaface, yunet, yunet_roi  # noqa: F401  (registers "retinaface", "yunet", "yunet_roi")
