"""The component pipeline: parse a component, instrument its core modules with an accessor,
and write every core instance's snapshot back (`core` drives it, `engine.component` runs it).

Pure like `module/`, whose instrumentation and rewrite it applies to each core module: it may
import `module/`, `wasm/` and the shared `errors` and `options`, never the engine.
"""
