"""auflow's built-in plugins: detectors, alignment, trackers, analyzers, sinks.

Each is a registered class, found by name from the config (``auflow.engine.registry``).
"""
