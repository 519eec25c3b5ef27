"""Plugins with the mistakes an outside researcher makes on a first try, one module each, loaded in tests through
`PWMBENCH_PLUGINS=bad_plugins.<module>`, `Plugins(extra=[module])` or a throw-away distribution whose entry point
names the module (tests/test_plugin_mistakes.py). `good` is CONTRIBUTING.md's example done right.

Modules import only the public API, as a third party's would.
"""
