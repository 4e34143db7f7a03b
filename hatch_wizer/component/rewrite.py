"""Write each core module's snapshot back into the component, and drop the init export."""

from __future__ import annotations

from ..rewrite import rewrite
from ..snapshot import Snapshot
from .instrument import ComponentContext
from .parse import reassemble

__all__ = ["rewrite_component"]


def rewrite_component(
    context: ComponentContext, snapshots: list[Snapshot]
) -> tuple[bytes, dict[int, bytes]]:
    """The pre-initialized component, and its rewritten modules by section ordinal: each
    instantiated module rewritten by the core rewrite (start dropped, active data replaced by
    the snapshot's), everything else kept."""
    modules = {
        access.instance.section: rewrite(access.context, snap)
        for access, snap in zip(context.modules, snapshots)
    }
    return reassemble(context.component, modules, context.drop), modules
