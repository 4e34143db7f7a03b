"""The engine: the only layer that imports wasmtime, and only through `wasmtime_api` for what
lies beyond wasmtime-py's stable API.

It configures engines and compiles (`compile`, with the rival compile of `rival`), links and
runs init with a time limit (`runtime`, `host` for WASI, `inputs` for the stdin and environment
init sees, `wasi` for the clocks and random, `interrupts` for stopping), runs big modules' init
in a child process where the process outlives the run (`child`), reads state back (`instance`),
and does the same for components (`component`, `wave` for init calls). It also compiles WAT
(`wat`) and wizened modules ahead of time (`precompile`, loaded at run time by `loader`). It
runs what the pipelines made, so it may import `module/`, `component/`, `wasm/` and the shared
`errors` and `options`; the pipelines never import it. The front ends call it through `core`,
apart from `interrupts`, `wat`, `inputs` (which the cache asks, without loading wasmtime) and
`loader` (the package's run-time API).
"""
