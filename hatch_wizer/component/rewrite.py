"""Write each core module's snapshot back into the component, and drop the init export."""

from __future__ import annotations

from ..errors import UnsupportedModule
from ..module.rewrite import rewrite
from ..module.state import Snapshot
from .instrument import ComponentContext, ModuleAccess
from .parse import Component, reassemble

__all__ = ["rewrite_component"]

# Where a module's bytes live: the component section ordinals from the root to the component
# that defines it, and its core module section's ordinal there.
Place = tuple[tuple[int, ...], int]


def rewrite_component(
    context: ComponentContext, snapshots: list[Snapshot]
) -> tuple[bytes, dict[str, bytes]]:
    """The pre-initialized component, and its rewritten modules by description: each
    instantiated module rewritten by the core rewrite (start dropped, active data replaced by
    the snapshot's), in whichever nested component defines it; everything else kept."""
    rewritten: dict[Place, bytes] = {}
    owners: dict[Place, tuple[ModuleAccess, Snapshot]] = {}
    for access, snap in zip(context.modules, snapshots):
        place = (access.scope, access.instance.section)
        if place in owners:
            _check_same_state(owners[place], (access, snap))
            continue
        owners[place] = (access, snap)
        rewritten[place] = rewrite(access.context, snap)
    out = _reassemble(context.component, (), rewritten, context)
    described = {
        f"core module {owners[place][0].instance.module} ({owners[place][0].where})": wasm
        for place, wasm in rewritten.items()
    }
    return out, described


def _reassemble(
    component: Component,
    scope: tuple[int, ...],
    rewritten: dict[Place, bytes],
    context: ComponentContext,
) -> bytes:
    """`component` (at `scope`) with its rewritten modules and nested components in place."""
    replaced = {section: wasm for (where, section), wasm in rewritten.items() if where == scope}
    depth = len(scope)
    for ordinal in {
        where[depth] for where, _ in rewritten if where[:depth] == scope and len(where) > depth
    }:
        replaced[ordinal] = _reassemble(
            component.children[ordinal], (*scope, ordinal), rewritten, context
        )
    return reassemble(component, replaced, context.drop if not scope else None)


def _check_same_state(
    first: tuple[ModuleAccess, Snapshot], other: tuple[ModuleAccess, Snapshot]
) -> None:
    """A module instantiated more than once has one set of bytes to write back into: fine
    only when every instance ends init in the same state."""
    (a, snap_a), (b, snap_b) = first, other
    if snap_a == snap_b:
        return
    differ = [
        what
        for what, x, y in (
            ("globals", snap_a.globals, snap_b.globals),
            ("memory", (snap_a.memory_pages, snap_a.data), (snap_b.memory_pages, snap_b.data)),
            ("tables", snap_a.tables, snap_b.tables),
            (
                "dropped segments",
                (snap_a.dropped_data, snap_a.dropped_elems),
                (snap_b.dropped_data, snap_b.dropped_elems),
            ),
        )
        if x != y
    ]
    raise UnsupportedModule(
        f"core module {a.instance.module} is instantiated more than once ({a.where}; "
        f"{b.where}) and the instances end init in different states ({', '.join(differ)}); "
        "one module can only hold one snapshot"
    )
