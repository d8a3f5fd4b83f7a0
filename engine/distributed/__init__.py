"""auflow beyond one machine, on Ray (the optional ``auflow[ray]`` extra; docs/scale-out.md).

- :mod:`.archive`: a batch of recorded videos as one Ray task per video (``auflow run FOLDER
  --executor ray``): the second executor of :func:`auflow.engine.runner.run`;
- :mod:`.fleet`: a fleet of cameras as detached Ray actors, one per camera (``auflow fleet``).

Only paths, camera ids and small summaries travel through Ray: frames stay in the process that
decodes them (a 720p frame is MBs; Ray's object store is for neither that nor a video's rows).
"""

from __future__ import annotations

import logging
from types import ModuleType

from ..errors import ConfigError

log = logging.getLogger(__name__)

RAY_VERSION = "2.60.0"  # the version auflow[ray] pins and its tests run
INSTALL_HINT = "pip install 'auflow[ray]'"

#: Ray's namespace for auflow's named actors, so `fleet status` and `fleet down` find them from any driver
NAMESPACE = "auflow"

#: the private Ray instance a run starts when given no address: only summaries travel through its object
#: store, so it needs little (Ray's own default takes 30 % of the machine's memory)
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20


def import_ray() -> ModuleType:
    """``ray``, or one clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError(f"the ray executor needs Ray, which is not installed ({e}): {INSTALL_HINT} "
                          f"(ray=={RAY_VERSION}), or run with executor.kind: local") from None
    return ray


def connect(address: str | None, what: str = "run") -> bool:
    """Join the Ray cluster at ``address`` (``None``: start a private one on this machine). Returns
    whether this call connected, so the caller knows to :func:`disconnect` (a test or a notebook that
    already called ``ray.init`` keeps its own connection)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kw: dict = {"namespace": NAMESPACE, "logging_level": logging.WARNING, "configure_logging": False}
    if address is None:
        kw.update(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{what}: cannot join the Ray cluster at {address!r}: {e}") from None
    return True


def disconnect(connected: bool) -> None:
    if connected:
        import ray

        ray.shutdown()
