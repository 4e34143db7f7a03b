"""The front ends: the `hatch-wizer` command (`cli`), the `[tool.wizer]` loader (`config`),
project builds (`project`), the hatch build hook (`hatch_hook`), the setuptools plugin
(`setuptools_plugin`) and the result line they print (`summary`).

Thin adapters over one config loader and `core.wizen()`: the top layer, it may import anything
below it, and nothing in the package imports it.
"""
