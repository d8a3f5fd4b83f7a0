"""One endpoint for a whole fleet: ``auflow fleet proxy fleet.yaml``.

A ZeroMQ XSUB socket connects to every camera actor's endpoint and an XPUB socket binds the fleet's
``proxy.publish``; messages flow down, subscriptions flow up, unchanged (a subscriber sees the same
wire format as from one camera, every camera's topics). The cameras' endpoints come from the fleet's
registry and are read again every ``refresh_s``: a camera restarted on another node (a new endpoint)
is connected within that, the one it left is disconnected.
"""

from __future__ import annotations

import logging
import threading

import zmq

from .fleet import FleetSpec, endpoints

log = logging.getLogger(__name__)


class FleetProxy:
    def __init__(self, spec: FleetSpec, publish: str | None = None, refresh_s: float = 0.5) -> None:
        self.spec = spec
        self.publish = publish or spec.proxy.publish
        self.refresh_s = refresh_s
        self.connected: dict[str, str] = {}  # cam → endpoint the XSUB is connected to
        self.forwarded = 0
        self._stop = threading.Event()
        self.bound: str | None = None

    def stop(self) -> None:
        self._stop.set()

    def _refresh(self, xsub: zmq.Socket, current: dict[str, str]) -> None:
        for cam, ep in current.items():
            old = self.connected.get(cam)
            if old == ep:
                continue
            if old is not None and old not in current.values():
                xsub.disconnect(old)
            xsub.connect(ep)
            self.connected[cam] = ep
            log.info("proxy: %s at %s%s", cam, ep, f" (was {old})" if old else "")

    def run(self, on_ready=None) -> None:
        """Forward until :meth:`stop`; ``on_ready(bound endpoint)`` once the XPUB is bound."""
        import ray

        from . import connect, disconnect

        connected = connect(self.spec.address, "fleet proxy")
        ctx = zmq.Context()
        xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
        try:
            for s in (xsub, xpub):
                s.setsockopt(zmq.LINGER, 0)
            xpub.bind(self.publish)
            self.bound = xpub.getsockopt_string(zmq.LAST_ENDPOINT)
            if on_ready is not None:
                on_ready(self.bound)
            poller = zmq.Poller()
            poller.register(xsub, zmq.POLLIN)
            poller.register(xpub, zmq.POLLIN)
            pending = None  # the registry's answer on its way, so forwarding never waits for it
            registry = ray.get_actor(f"{self.spec.name}/registry", namespace="auflow")
            while not self._stop.is_set():
                if pending is None:
                    pending = registry.endpoints.remote()
                ready, _ = ray.wait([pending], timeout=0)
                if ready:
                    self._refresh(xsub, ray.get(pending))
                    pending = None
                    next_refresh = self.refresh_s
                else:
                    next_refresh = 0.05
                for sock, _ in poller.poll(timeout=int(min(self.refresh_s, next_refresh) * 1000)):
                    if sock is xsub:
                        while True:
                            try:
                                xpub.send_multipart(xsub.recv_multipart(zmq.NOBLOCK))
                                self.forwarded += 1
                            except zmq.Again:
                                break
                    else:
                        while True:
                            try:
                                xsub.send_multipart(xpub.recv_multipart(zmq.NOBLOCK))  # subscriptions, upstream
                            except zmq.Again:
                                break
        finally:
            xsub.close()
            xpub.close()
            ctx.term()
            disconnect(connected)


__all__ = ["FleetProxy", "endpoints"]
