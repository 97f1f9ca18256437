"""Several metadata setups side by side in one run (``run.py --metadata sqlite,postgres
--namenodes 1,2``): their figures under one name each, the ratios between them, and a table.

Each run measures every setup in turn (SQLite, then PostgreSQL with one name node, then with
two...; the next run in the reverse order, so that a drift of the machine's load favours none),
each on its own cluster, started for it and stopped after it, so that only one cluster uses the
machine at a time; a cluster keeps its metadata from one run to the next. A ratio is computed
within each run, from figures measured minutes apart, then summarized over the runs: on a
shared, noisy machine the ratios are steadier than the figures.
"""

from __future__ import annotations

import statistics

from common import Samples
from metadata import OWN_POSTGRES, Setup

# Figures of the table, in order, with their labels; the rates and the listing.
ROWS = {
    "w3_write_files_per_s": "W3 write 4 KiB (files/s)",
    "w3_read_files_per_s": "W3 read 4 KiB (files/s)",
    "w4_mkdir_ops_per_s": "W4 mkdir, 1 client (ops/s)",
    "w4_stat_ops_per_s": "W4 stat, 1 client",
    "w4_create_ops_per_s": "W4 create, 1 client",
    "w4_c16_mkdir_ops_per_s": "W4 mkdir, 16 clients",
    "w4_c16_stat_ops_per_s": "W4 stat, 16 clients",
    "w4_c16_create_ops_per_s": "W4 create, 16 clients",
    "w4_list_ms": "W4 `ls` of 10,000 entries (ms)",
    "w5_files_per_s": "W5 64 KiB, one file at a time per process (files/s)",
}
# The phases whose CPU the second table shows: figure prefix → label.
CPU_ROWS = {
    "w3_write": "W3 write",
    "w3_read": "W3 read",
    "w4_mkdir": "W4 mkdir, 1 client",
    "w4_stat": "W4 stat, 1 client",
    "w4_create": "W4 create, 1 client",
    "w4_c16_mkdir": "W4 mkdir, 16 clients",
    "w4_c16_stat": "W4 stat, 16 clients",
    "w4_c16_create": "W4 create, 16 clients",
    "w5": "W5 (client: all its processes)",
}


def merge(setups: list[Setup], per_setup: dict[str, list[Samples]]) -> list[Samples]:
    """One ``Samples`` per run holding every setup's figures, each named ``<setup>_<figure>``."""
    runs = max(len(r) for r in per_setup.values())
    merged: list[Samples] = [{} for _ in range(runs)]
    for setup in setups:
        for i, samples in enumerate(per_setup[setup.name]):
            merged[i].update({f"{setup.name}_{k}": v for k, v in samples.items()})
    return merged


def pairs(setups: list[Setup]) -> list[tuple[Setup, Setup]]:
    """(setup, baseline) pairs to divide: every setup by the first, and each PostgreSQL setup
    with more name nodes by the one with one name node."""
    out = [(s, setups[0]) for s in setups[1:]]
    single = next((s for s in setups if s.metadata is not None and s.namenodes == 1), None)
    if single is not None:
        out += [(s, single) for s in setups if s.metadata is not None and s.namenodes > 1]
    return list(dict.fromkeys(out))


def short(figure: str) -> str:
    return figure.removesuffix("_ops_per_s").removesuffix("_files_per_s")


def ratios(setups: list[Setup], base: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Ratio name → (numerator, denominator) figure names: *base* (run.py's ratios within one
    setup) for every setup, and every ``ROWS`` figure of each pair of setups."""
    out = {
        f"ratio_{s.name}_{name.removeprefix('ratio_')}": (f"{s.name}_{a}", f"{s.name}_{b}")
        for s in setups
        for name, (a, b) in base.items()
    }
    for s, baseline in pairs(setups):
        for figure in ROWS:
            out[f"ratio_{s.name}_to_{baseline.name}_{short(figure)}"] = (
                f"{s.name}_{figure}",
                f"{baseline.name}_{figure}",
            )
    return out


def _medians(runs: list[Samples], name: str) -> list[float]:
    """The median of figure *name* in each run that has it."""
    return [statistics.median(v) for run in runs if (v := run.get(name))]


def _cell(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    med = f"{statistics.median(values):,.{digits}f}"
    if len(values) == 1:
        return med
    return f"{med} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def table(setups: list[Setup], runs: list[Samples], ratio_values: dict[str, list[float]]) -> str:
    """Three Markdown tables: every ``ROWS`` figure per setup (median of the runs, min-max) with
    the ratios; the CPU of each process during each phase; and the CPU each operation cost."""
    return "\n\n".join(
        [_rates(setups, runs, ratio_values), _cpu(setups, runs), _costs(setups, runs)]
    )


def _rates(setups: list[Setup], runs: list[Samples], ratio_values: dict[str, list[float]]) -> str:
    ps = pairs(setups)
    head = ["figure", *(s.label for s in setups), *(f"{a.name} / {b.name}" for a, b in ps)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for figure, label in ROWS.items():
        if not any(run.get(f"{s.name}_{figure}") for s in setups for run in runs):
            continue
        digits = 1 if figure.endswith("_ms") else 0
        cells = [_cell(_medians(runs, f"{s.name}_{figure}"), digits) for s in setups]
        cells += [
            _cell(ratio_values.get(f"ratio_{a.name}_to_{b.name}_{short(figure)}", []), 2)
            for a, b in ps
        ]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


NAMENODES = ["namenode", *(f"namenode{k}" for k in range(2, 10))]
DATANODES = [f"datanode{k}" for k in range(1, 10)]  # measured in the phases that write files
PROCESSES = ["client", *NAMENODES, OWN_POSTGRES, *DATANODES]


def _cpu(setups: list[Setup], runs: list[Samples]) -> str:
    lines = [
        "CPU during each phase, % of one core (median of the runs): name node(s) / "
        "PostgreSQL / data nodes (W3, W5) / the client (the benchmark's process; W5's "
        "processes together) / the whole machine (all programs)",
        "",
        "| phase | " + " | ".join(s.label for s in setups) + " |",
        "|---" + "|---:" * len(setups) + "|",
    ]
    for phase, label in CPU_ROWS.items():
        cells = []
        for s in setups:
            pct = {}
            for who in [*PROCESSES, "machine"]:
                values = _medians(runs, f"{s.name}_{phase}_{who}_cpu_pct")
                if values:
                    pct[who] = statistics.median(values)
            if not pct:
                cells.append("-")
                continue
            nn = " + ".join(f"{v:.0f}" for k, v in pct.items() if k in NAMENODES)
            pg = f"{pct[OWN_POSTGRES]:.0f}" if OWN_POSTGRES in pct else "-"
            dn = " + ".join(f"{v:.0f}" for k, v in pct.items() if k in DATANODES) or "-"
            client, machine = pct.get("client", 0), pct.get("machine", 0)
            cells.append(f"{nn} / {pg} / {dn} / {client:.0f} / {machine:.0f}")
        if any(c != "-" for c in cells):
            lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def cost_us(run: Samples, setup: Setup, phase: str) -> float | None:
    """CPU microseconds one operation of *phase* cost in *run*: the name nodes', PostgreSQL's,
    the data nodes' (where measured) and the client's CPU over the phase, divided by the
    operations. Unlike a rate, it does not depend on the share of the machine that other
    programs left."""
    unit = "files" if phase.startswith(("w3", "w5")) else "ops"
    rate = run.get(f"{setup.name}_{phase}_{unit}_per_s")
    used = [run.get(f"{setup.name}_{phase}_{who}_cpu_pct") for who in PROCESSES]
    if not rate or not any(used):
        return None
    return sum(v[0] for v in used if v) / 100 / statistics.median(rate) * 1e6


def _costs(setups: list[Setup], runs: list[Samples]) -> str:
    head = [
        "phase",
        *(s.label for s in setups),
        *(f"{s.name} / {setups[0].name}" for s in setups[1:]),
    ]
    lines = [
        "CPU per operation, µs (name nodes + PostgreSQL + data nodes in W3 and W5 + client; "
        "median of the runs, min-max): what the rates would be bounded by on cores of their own",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * (len(head) - 1) + "|",
    ]
    for phase, label in CPU_ROWS.items():
        costs = {
            s.name: [c for run in runs if (c := cost_us(run, s, phase)) is not None] for s in setups
        }
        if not any(costs.values()):
            continue
        ratios = [
            [
                c / b
                for run in runs
                if (c := cost_us(run, s, phase)) and (b := cost_us(run, setups[0], phase))
            ]
            for s in setups[1:]
        ]
        cells = [_cell(costs[s.name]) for s in setups] + [_cell(r, 2) for r in ratios]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)
