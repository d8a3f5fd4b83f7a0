"""Imports every module that registers models, so ``MODELS`` knows all names on first lookup."""

from auflow.models.au import me_graphau  # noqa: F401
from auflow.models.expr import fer  # noqa: F401
from auflow.models.au import topo_au  # noqa: F401
from auflow.models.au import au_gcn  # noqa: F401
from auflow.models.expr import arpgnet  # noqa: F401
from auflow.models.expr import svml_rgcn  # noqa: F401
from auflow.models.expr import window_mean  # noqa: F401
from auflow.models.au import baseline  # noqa: F401
