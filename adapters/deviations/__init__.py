"""Declared deviations shipped with the built-in adapters (TOML; format in ffnspec.conformance.machinery.xfails)."""
