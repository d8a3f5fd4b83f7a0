"""Prometheus ``/metrics`` from the message stream, as a sink: it needs no change to the pipeline.

``sinks: [{name: jsonl}, {name: prometheus, port: 9464}]`` serves
``http://127.0.0.1:9464/metrics`` for as long as the run lasts. The metrics themselves are
:class:`auflow.engine.metrics.EngineMetrics` (names and meanings are listed there).
"""

from __future__ import annotations


from auflow.engine.metrics import EngineMetrics
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import SINKS


@SINKS.register("prometheus")
class PrometheusSink(Plugin):
    class Config(PluginConfig):
        port: int = 9464  # 0: any free port (logged)
        addr: str = "127.0.0.1"  # loopback unless a remote Prometheus must scrape it

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.metrics: EngineMetrics | None = None

    def start(self, ctx: StartContext = CPU) -> None:
        self.metrics = EngineMetrics()
        self.metrics.serve(self.config.port, self.config.addr)

    def write(self, message: dict) -> None:
        self.metrics.observe(message)

    def flush(self) -> None:
        """Nothing buffered: every message updates the metrics at once."""

    def stop(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
