"""The engine: the only layer that imports wasmtime.

It configures engines and compiles (`compile`, with the rival compile of `rival`), links and
runs init with a time limit (`runtime`, `host` for WASI, `wasi` for the clocks and random that
init sees, `interrupts` for stopping), reads state back (`instance`), and does the same for
components (`component`, `wave` for init calls). It runs what the pipelines made, so it may
import `module/`, `component/`, `wasm/` and the shared `errors` and `options`; the pipelines
never import it, and the front ends call it through `core`, apart from `interrupts` and `wat`.
"""
