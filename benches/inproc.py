"""Times one in-process `hatch_wizer.core.wizen()` call, imports and file I/O excluded.

    python -m benches.inproc INPUT OUTPUT INIT_FUNC ALLOW_WASI(0|1) [GUEST::HOST ...]

Prints {"seconds": ..., "stages": {...}} as JSON; XDG_CACHE_HOME picks the compilation cache.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import hatch_wizer.engine.runtime  # noqa: F401  (wasmtime too: a build hook has loaded it for its first module)
from hatch_wizer.core import wizen
from hatch_wizer.options import Preopen, WizenOptions

_STAGE = re.compile(r"^(\w+): ([0-9.]+) s$")


def main(argv: list[str]) -> int:
    src, dst, init_func, allow_wasi, *maps = argv
    preopens = tuple(Preopen(guest, Path(host)) for guest, host in (m.split("::", 1) for m in maps))
    options = WizenOptions(
        init_func=init_func, allow_wasi=allow_wasi == "1", preopens=preopens, inherit_stdio=False
    )
    data = Path(src).read_bytes()
    stages: dict[str, float] = {}

    def report(line: str) -> None:
        if m := _STAGE.match(line):
            stages[m.group(1)] = float(m.group(2))

    start = time.perf_counter()
    out = wizen(data, options, report=report)
    seconds = time.perf_counter() - start
    Path(dst).write_bytes(out)
    print(json.dumps({"seconds": seconds, "stages": stages}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
