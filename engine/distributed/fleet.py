"""A fleet of cameras on a Ray cluster: ``auflow fleet up|status|down|proxy fleet.yaml``.

Each camera is one *detached* named Ray actor (:class:`CameraActor`, ``<fleet>/<cam>`` in Ray's
``auflow`` namespace) that runs auflow's own pipeline on that one live stream and publishes on its
own ZeroMQ endpoint, placed by the resources the fleet file declares (``num_cpus``, ``num_gpus`` —
fractions allowed — or custom resources). Detached: it outlives ``fleet up``; ``max_restarts=-1``:
when its node dies Ray starts it again on another node. The new instance opens the camera under a
new ``sid`` and first publishes the ``eos`` of the session the dead node could not end (reason
``node_lost``).

What a camera's instance must know of the one before it (its session, its last ``seq``), what
``fleet status`` shows and where the proxy connects, a small detached :class:`FleetRegistry` actor
keeps, pinned to the head node (a node that dies takes its cameras with it, never the registry).
Only these small records travel through Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

from pydantic import Field, field_validator

from ..configfile import Strict, load_yaml_model
from ..errors import ConfigError
from ..wire.endpoint import check_endpoint
from . import NAMESPACE, import_ray

log = logging.getLogger(__name__)

HEAD_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource (1.0): the registry runs there
REPORT_EVERY_S = 0.5  # a camera's figures (sid, last seq, fps, drops) sent to the registry this often


def _bindable(v: str) -> str:
    try:
        return check_endpoint(v, bind=True)
    except ConfigError as e:
        raise ValueError(str(e)) from None


class CameraSpec(Strict):
    cam: str = Field(description="camera id (topics, actor name)")
    uri: str = Field(description="rtsp:// or http(s):// URL, a webcam, or a file played live (with source.realtime)")
    publish: str = Field("tcp://127.0.0.1:*", description=(
        "endpoint its actor binds on whichever node runs it (port * = any free one); tcp://0.0.0.0:PORT for "
        "subscribers on other machines (subscribers find the actual address through the fleet: proxy, status)"))
    num_cpus: float = Field(1.0, ge=0, description="CPUs the camera reserves (fractions allowed)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs the camera reserves (0.25: four cameras share a GPU)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources, e.g. {lobby_node: 1}")
    set: list[str] = Field(default_factory=list, description="config overrides for this camera, as --set")

    _publish = field_validator("publish")(_bindable)


class ProxySpec(Strict):
    publish: str = Field("tcp://127.0.0.1:5600", description="where `auflow fleet proxy` binds its XPUB for subscribers")

    _publish = field_validator("publish")(_bindable)


class FleetSpec(Strict):
    name: str = Field(description="the fleet's name: its actors are <name>/<cam>")
    address: str | None = Field("auto", description="the Ray cluster: auto | HOST:PORT | ray://HOST:10001")
    config: str | None = Field(None, description="run config for every camera (default: the packaged default)")
    set: list[str] = Field(default_factory=list, description="config overrides for every camera")
    cameras: list[CameraSpec]
    proxy: ProxySpec = ProxySpec()


def load_fleet(path: str | Path) -> FleetSpec:
    path = Path(path)
    spec = load_yaml_model(FleetSpec, path, what="fleet file")[0]
    cams = [c.cam for c in spec.cameras]
    if len(set(cams)) != len(cams):
        raise ConfigError(f"{path}: two cameras share an id ({', '.join(cams)})")
    if spec.config is not None and not Path(spec.config).is_absolute():
        spec.config = str((path.parent / spec.config).resolve())
    return spec


def camera_config(spec: FleetSpec, cam: CameraSpec) -> dict:
    """The run config of one camera, resolved where the fleet is started (its files need not exist on the nodes)."""
    from ..config import load_config

    cfg = load_config(spec.config, [*spec.set, *cam.set, f"source.cam={cam.cam}", f"publish.endpoint={cam.publish}",
                                    "executor.kind=local"])
    return cfg.model_dump(mode="json")


def registry_name(fleet: str) -> str:
    return f"{fleet}/registry"


def actor_name(fleet: str, cam: str) -> str:
    return f"{fleet}/{cam}"


# -- actors (plain classes: ray.remote(...) wraps them when a fleet starts, so importing needs no Ray) --------
class FleetRegistry:
    """The fleet's small memory: per camera its node, endpoint, session and figures."""

    def __init__(self, fleet: str) -> None:
        self.fleet = fleet
        self.cams: dict[str, dict] = {}

    def begin(self, cam: str, node: str, host: str, reconstructed: bool) -> dict | None:
        """A camera's instance starts: returns the session its predecessor left open (to be ended)."""
        prev = self.cams.get(cam)
        rec = {"cam": cam, "node": node, "host": host, "state": "connecting", "sid": "", "last_seq": -1, "fps": 0.0,
               "dropped": 0, "restarts": 0, "endpoint": None, "error": None, "updated": time.time()}
        lost = None
        if prev is not None:
            rec["restarts"] = prev["restarts"] + (1 if reconstructed else 0)
            if prev["sid"] and prev["state"] != "ended":
                lost = {"sid": prev["sid"], "last_seq": prev["last_seq"], "node": prev["node"]}
        self.cams[cam] = rec
        return lost

    def update(self, cam: str, info: dict) -> None:
        if cam in self.cams:
            self.cams[cam].update(info, updated=time.time())

    def table(self) -> dict[str, dict]:
        return self.cams

    def endpoints(self) -> dict[str, str]:
        return {cam: r["endpoint"] for cam, r in self.cams.items() if r.get("endpoint")}


class CameraActor:
    """One camera: auflow's pipeline on its stream, in this actor's process, publishing on its own endpoint."""

    def __init__(self, fleet: str, cam: str, uri: str, cfg_data: dict, eos_wait_s: float = 10.0) -> None:
        import ray

        from ..config import RunConfig

        ctx = ray.get_runtime_context()
        self.fleet, self.cam, self.uri = fleet, cam, uri
        self.node, self.host = ctx.get_node_id(), socket.gethostname()
        self.registry = ray.get_actor(registry_name(fleet), namespace=NAMESPACE)
        self.lost = ray.get(self.registry.begin.remote(cam, self.node, self.host, ctx.was_current_actor_reconstructed))
        self.cfg = RunConfig.model_validate(cfg_data)
        self.eos_wait_s = eos_wait_s
        self.pipe = None
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"auflow-fleet-{cam}", daemon=True)
        self._thread.start()
        self._reporter = threading.Thread(target=self._report, name=f"auflow-fleet-report-{cam}", daemon=True)
        self._reporter.start()

    def _advertised(self, bound: str) -> str:
        """The bound endpoint as others reach it: a wildcard host becomes this node's address."""
        import ray

        transport, _, rest = bound.partition("://")
        host, _, port = rest.rpartition(":")
        if host in ("0.0.0.0", "*", "[::]", "::"):
            host = ray.util.get_node_ip_address()
        return f"{transport}://{host}:{port}"

    def _ready(self, bound: str) -> None:
        from ..wire import format as wire

        endpoint = self._advertised(bound)
        self.registry.update.remote(self.cam, {"endpoint": endpoint})
        if self.lost is not None:  # end the session the dead node could not: after a subscriber (the proxy) is back
            self.pipe.publisher.wait_for_subscribers(1, self.eos_wait_s)
            self.pipe.publisher.send(wire.eos_message(self.cam, self.lost["sid"], "node_lost", self.lost["last_seq"],
                                                      node=self.lost["node"]))
            log.warning("%s: its node %s was lost; session %s ended (node_lost), restarting here", self.cam,
                        self.lost["node"][:8], self.lost["sid"])

    def _run(self) -> None:
        from ..pipeline.core import Pipeline
        from ..runner import preflight

        try:
            sources, failed = preflight([self.uri], self.cfg, {self.uri: self.cam})
            if failed:
                raise RuntimeError(next(iter(failed.values())))
            run_dir = Path(self.cfg.out) / f"fleet-{self.fleet}" / self.cam
            self.pipe = Pipeline(self.cfg, sources, run_dir, on_publish_ready=self._ready)
            self.pipe.run()
            st = self.pipe.stats[self.cam]
            self.error = st.error
        except Exception as e:  # noqa: BLE001 - reported through the registry (fleet status), the actor stays up
            self.error = f"{type(e).__name__}: {e}"
            log.exception("%s: camera failed", self.cam)
        finally:
            self._done.set()

    def _figures(self) -> dict:
        pipe = self.pipe
        if pipe is None:
            return {"state": "starting" if not self._done.is_set() else "ended", "error": self.error}
        st = pipe.stats[self.cam]
        return {"state": "ended" if self._done.is_set() else st.state, "sid": st.sid, "last_seq": st.last_seq,
                "fps": round(st.fps, 2), "dropped": st.dropped + st.decimated, "frames": st.frames_out,
                "error": self.error or st.error}

    def _report(self) -> None:
        while True:
            ended = self._done.wait(REPORT_EVERY_S)
            try:
                self.registry.update.remote(self.cam, self._figures())
            except Exception:  # noqa: BLE001 - the registry is gone (fleet down): nothing to report to
                return
            if ended:
                return

    def ready(self) -> dict:
        return {"node": self.node, "host": self.host, "pid": os.getpid()}

    def stop(self, timeout_s: float = 20.0) -> dict:
        """End the stream cleanly (in-flight frames published, sinks flushed, eos sent)."""
        if self.pipe is not None:
            self.pipe.stop()
        self._done.wait(timeout_s)
        return self._figures()


# -- what the CLI calls ---------------------------------------------------------------------------------
def _remote(ray, cls):
    return ray.remote(cls)


def up(spec: FleetSpec, timeout_s: float = 120.0) -> dict[str, dict]:
    """Start the registry and one actor per camera (those already running are kept); returns where each runs."""
    ray = import_ray()
    from . import connect, disconnect

    cfgs = {c.cam: camera_config(spec, c) for c in spec.cameras}  # every config error before anything starts
    connected = connect(spec.address, "fleet up")
    try:
        registry = _remote(ray, FleetRegistry).options(
            name=registry_name(spec.name), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
            resources={HEAD_RESOURCE: 0.001}).remote(spec.name)
        ray.get(registry.table.remote(), timeout=timeout_s)
        actor_cls = _remote(ray, CameraActor)
        actors = {}
        for c in spec.cameras:
            actors[c.cam] = actor_cls.options(
                name=actor_name(spec.name, c.cam), namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                max_restarts=-1, num_cpus=c.num_cpus, num_gpus=c.num_gpus, resources=c.resources or None,
                scheduling_strategy="SPREAD").remote(spec.name, c.cam, c.uri, cfgs[c.cam])
        placed = {cam: ray.get(a.ready.remote(), timeout=timeout_s) for cam, a in actors.items()}
    finally:
        disconnect(connected)
    return placed


def status(spec: FleetSpec) -> dict[str, dict]:
    ray = import_ray()
    from . import connect, disconnect

    connected = connect(spec.address, "fleet status")
    try:
        try:
            registry = ray.get_actor(registry_name(spec.name), namespace=NAMESPACE)
        except ValueError:
            raise ConfigError(f"no fleet {spec.name!r} runs on this cluster (auflow fleet up FLEET.yaml)") from None
        return ray.get(registry.table.remote(), timeout=30)
    finally:
        disconnect(connected)


def down(spec: FleetSpec, timeout_s: float = 30.0) -> list[str]:
    """Stop every camera cleanly (eos published), then remove its actor and the registry; returns what was removed."""
    ray = import_ray()
    from . import connect, disconnect

    connected = connect(spec.address, "fleet down")
    removed = []
    try:
        handles = {}
        for name in [actor_name(spec.name, c.cam) for c in spec.cameras] + [registry_name(spec.name)]:
            try:
                handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
        stops = [h.stop.remote() for n, h in handles.items() if n != registry_name(spec.name)]
        try:
            ray.get(stops, timeout=timeout_s)
        except Exception as e:  # noqa: BLE001 - a camera that cannot stop cleanly is removed all the same
            log.warning("fleet down: a camera did not stop cleanly (%s); removing it anyway", e)
        for name, h in handles.items():
            ray.kill(h, no_restart=True)
            removed.append(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_alive(ray, n) for n in handles):
            time.sleep(0.2)
    finally:
        disconnect(connected)
    return removed


def _alive(ray, name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return True
    except ValueError:
        return False


def endpoints(spec: FleetSpec) -> dict[str, str]:
    return {cam: r["endpoint"] for cam, r in status(spec).items() if r.get("endpoint")}


__all__ = ["CameraActor", "CameraSpec", "FleetRegistry", "FleetSpec", "down", "endpoints", "load_fleet", "status", "up"]
