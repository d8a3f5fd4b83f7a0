"""Packaged configuration files: default.yaml (what the demo runs) and train/*.yaml."""
