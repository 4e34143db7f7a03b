"""Turns results.json into a markdown table and a PNG chart of ours / reference ratios."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["markdown", "ratios", "write_all"]

REFERENCES = ("wizer11", "wasmtime")
METRICS = (
    ("wizen time, cold", "ours", "wall_s"),
    ("wizen() in-process, cold", "ours-lib", "wall_s"),
    ("wizen time, warm cache", "ours-warm", "wall_s"),
    ("wizen() in-process, warm cache", "ours-lib-warm", "wall_s"),
    ("output size", "ours", "size"),
    ("start-up", "ours", "startup_ms"),
    ("peak RSS", "ours", "max_rss_mib"),
)


def _value(row: dict[str, Any], key: str) -> float | None:
    if not row.get("ok"):
        return None
    if key == "size":
        return float(row["output"]["size"])
    return float(row[key])


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{workload: {metric: ours / best reference}}; the best reference is the smaller value
    of Wizer 11 and `wasmtime wizer` (cold) among those that succeeded."""
    table: dict[str, dict[str, float]] = {}
    for wl in results["workloads"]:
        tools = wl["tools"]
        table[wl["name"]] = {}
        for label, ours_key, key in METRICS:
            ours = _value(tools.get(ours_key, {}), key)
            refs = [v for r in REFERENCES if (v := _value(tools.get(r, {}), key)) is not None]
            if ours is not None and refs and min(refs) > 0:
                table[wl["name"]][label] = ours / min(refs)
    return table


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def _size(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n} B"


def _startup(ms: float) -> str:
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.1f} ms"


def _runs(results: dict[str, Any]) -> str:
    """'5 runs', or '5 runs (cpython: 3)' when a workload was measured fewer times."""
    fewer = {}
    for wl in results["workloads"]:
        counts = {len(r["wall_all_s"]) for r in wl["tools"].values() if r.get("wall_all_s")}
        if counts and max(counts) != results["runs"]:
            fewer[wl["name"]] = max(counts)
    extra = ", ".join(f"{name}: {n}" for name, n in fewer.items())
    return f"{results['runs']} runs" + (f" ({extra})" if extra else "")


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']}{' at commit ' + m['commit'] if m.get('commit') else ''}"
        f"{' (hatch_wizer/ modified)' if m.get('core_dirty') else ''}"
        f" on {m['cpus']} cores ({m['platform']}), Python {m['python']}; "
        f"wizen time = median of {_runs(results)} (process wall time); start-up = median "
        "of instantiate + first call (module compiled once, wasmtime-py); the original's "
        "start-up includes `_initialize` + init.",
        "",
        "| workload | tool | wizen time | peak RSS | output | data segs | start-up | Python-side |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for wl in results["workloads"]:
        inp = wl["input"]
        lines.append(
            f"| **{wl['name']}** ({wl['what']}) | original | - | - | {_size(inp['size'])} | "
            f"{inp['data_segments']} | {_startup(wl['original_startup_ms'])} | - |"
        )
        for row in wl["tools"].values():
            if not row.get("ok"):
                lines.append(f"| | {row['label']} | fails: {row.get('error', '?')} | | | | | |")
                continue
            py = row.get("python_side_fraction")
            mark = "" if row.get("same_result", True) else " ⚠ differs"
            at = f" @{row['commit']}" if row.get("commit") else ""
            lines.append(
                f"| | {row['label']}{at} | {_ms(row['wall_s'])} | {row['max_rss_mib']:.0f} MiB | "
                f"{_size(row['output']['size'])} | {row['output']['data_segments']:,} | "
                f"{_startup(row['startup_ms'])}{mark} | "
                f"{'' if py is None else f'{py:.0%}'} |"
            )
    table = ratios(results)
    labels = [label for label, _, _ in METRICS]
    lines += [
        "",
        "Ratios, ours / the better of Wizer 11 and `wasmtime wizer` (below 1 is better):",
        "",
        "| workload | " + " | ".join(labels) + " |",
        "|---|" + "--:|" * len(labels),
    ]
    for name, row in table.items():
        cells = [f"{row[label]:.2f}" if label in row else "-" for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _targets(results)
    if "scan_gbps" in results:
        lines += ["", "Memory scan alone (`python -m benches.scan_speed`, 256 MiB, GB/s):", ""]
        for compiler, speeds in results["scan_gbps"].items():
            lines.append(f"- {compiler}: " + ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()))
    return "\n".join(lines) + "\n"


def _wall(results: dict[str, Any], workload: str, tool: str) -> dict[str, Any] | None:
    for wl in results["workloads"]:
        if wl["name"] == workload and wl["tools"].get(tool, {}).get("ok"):
            return wl["tools"][tool]  # type: ignore[no-any-return]
    return None


def _targets(results: dict[str, Any]) -> list[str]:
    """Issue 22's figures: the CLI's cold overhead, uap against Wizer 11, CPython against
    `wasmtime wizer` (those this run measured)."""
    rows = []
    if cli := results.get("cli_overhead"):
        diff = cli["ours_fastest_ms"] - cli["floor_fastest_ms"]
        rows.append(
            f"| `hatch-wizer --no-cache small.wasm` above `python -c 'import wasmtime'` | "
            f"{diff:.1f} ms ({cli['ours_fastest_ms']:.1f} vs {cli['floor_fastest_ms']:.1f}, "
            f"fastest of {cli['rounds']}; medians {cli['ours_median_ms']:.1f} vs "
            f"{cli['floor_median_ms']:.1f}) | at most 15 ms |"
        )
    ours, wizer = _wall(results, "uap", "ours"), _wall(results, "uap", "wizer11")
    if ours and wizer:
        rows.append(
            f"| uap, cold CLI / Wizer 11 | {ours['wall_s'] / wizer['wall_s']:.2f} "
            f"({_ms(ours['wall_s'])} vs {_ms(wizer['wall_s'])}) | at most 0.9 |"
        )
    ours, wasmtime = _wall(results, "cpython", "ours"), _wall(results, "cpython", "wasmtime")
    if ours and wasmtime:
        rows.append(
            f"| CPython, cold CLI / `wasmtime wizer -C cache=n` | "
            f"{ours['wall_s'] / wasmtime['wall_s']:.2f} ({_ms(ours['wall_s'])} vs "
            f"{_ms(wasmtime['wall_s'])}) | at most 0.8 |"
        )
        rows.append(
            f"| CPython, peak RSS above `wasmtime wizer`'s | "
            f"{ours['max_rss_mib'] - wasmtime['max_rss_mib']:+.0f} MiB "
            f"({ours['max_rss_mib']:.0f} vs {wasmtime['max_rss_mib']:.0f}) | at most +100 MiB |"
        )
    if not rows:
        return []
    return ["", "Cold-run targets (issue 22):", "", "| figure | measured | target |",
            "|---|--:|--:|", *rows]  # fmt: skip


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = ratios(results)
    names = list(table)
    labels = [label for label, _, _ in METRICS]
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(names))]
        ys = [table[n].get(label, float("nan")) for n in names]
        ax.bar(xs, ys, width, label=label)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("hatch-wizer / best reference (log; < 1 is better)")
    ax.set_title("hatch-wizer vs the Rust Wizer (Wizer 11, wasmtime wizer)")
    ax.legend(fontsize=8, ncols=3)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_all(results: dict[str, Any], out: Path) -> None:
    (out / "results.md").write_text(markdown(results))
    chart(results, out / "ratios.png")


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "benches/results")
    write_all(json.loads((folder / "results.json").read_text()), folder)
