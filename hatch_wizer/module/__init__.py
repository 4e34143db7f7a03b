"""The core-module pipeline, pure: instrument a parsed module so its state can be read
(`instrumentation`, with the memory scanner and segment encoder it adds, `scanner`), take the
snapshot from an `InstanceState` (`state`, `layout`), compare two (`determinism`) and write the
snapshot back into the module (`rewrite`).

It never runs anything: `engine/` runs the instrumented module and answers `InstanceState`.
It may import `wasm/` and the shared `errors` and `options`, never the engine or a front end.
"""
