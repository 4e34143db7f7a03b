"""Earlier results, reused: an unchanged module with unchanged options is a file read.

`key` hashes everything that decides the output and that init can see (the module, the options,
preopened trees and preloads by content, the environment init sees, the clock when reproducible,
this package's own code); `store` keeps the outputs and verifies one before it is reused.
A result is reused as if init had run again; an init that reads the wall clock or random bytes
gets the state of the cached run (`--no-cache` wizens anew). A run whose init could read data
from stdin (a pipe, a file, a terminal with input waiting) is neither reused nor stored.
"""

from .key import result_key
from .store import ResultCache

__all__ = ["ResultCache", "result_key"]
