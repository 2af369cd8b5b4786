#!/usr/bin/env python3
"""Static GPU report of every RetNet.Ilgpu kernel: ptxas resource usage and theoretical occupancy.

Reads the folder written by `retnet kernels --ptx DIR` (PTX for sm_80 and sm_90 plus manifest.json with each
kernel's launch geometry), runs `ptxas -v` on every file, and writes a Markdown table and a JSON file.
`--self-test` runs the unit tests of the parser and the occupancy calculator (no ptxas needed).
"""

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import unittest
from dataclasses import dataclass, asdict
from pathlib import Path


@dataclass(frozen=True)
class Architecture:
    """Per-SM limits of one compute capability, as NVIDIA's occupancy calculator (cuda_occupancy.h) uses them."""

    name: str
    gpu: str
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_groups_per_sm: int
    registers_per_sm: int
    # Registers are allocated per warp in units of 256, and a warp's registers live in one of the SM's 4
    # sub-partitions (so the register limit counts warps per sub-partition, i.e. in steps of 4 warps per SM).
    register_allocation_unit: int
    register_sub_partitions: int
    max_registers_per_thread: int
    max_registers_per_group: int
    shared_per_sm: int
    max_shared_per_group: int
    # Since sm_80 the driver reserves 1 KB of shared memory for every resident group (system use), counted against
    # the SM's shared memory even for a group that declares none.
    reserved_shared_per_group: int
    shared_allocation_unit: int
    warp_size: int = 32
    max_threads_per_group: int = 1024
    # Without cudaFuncSetAttribute (which ILGPU 1.5.3 never calls) a group gets at most 48 KB of shared memory.
    default_shared_per_group: int = 48 * 1024


KB = 1024

# A100 (compute capability 8.0): 164 KB of the 192 KB L1/shared array can be shared memory, 163 KB per group.
SM_80 = Architecture(
    name="sm_80", gpu="A100", max_threads_per_sm=2048, max_warps_per_sm=64, max_groups_per_sm=32,
    registers_per_sm=65536, register_allocation_unit=256, register_sub_partitions=4, max_registers_per_thread=255,
    max_registers_per_group=65536, shared_per_sm=164 * KB, max_shared_per_group=163 * KB,
    reserved_shared_per_group=1 * KB, shared_allocation_unit=128)

# H100 / H200 (compute capability 9.0): 228 KB of the 256 KB L1/shared array can be shared memory, 227 KB per group.
SM_90 = Architecture(
    name="sm_90", gpu="H100/H200", max_threads_per_sm=2048, max_warps_per_sm=64, max_groups_per_sm=32,
    registers_per_sm=65536, register_allocation_unit=256, register_sub_partitions=4, max_registers_per_thread=255,
    max_registers_per_group=65536, shared_per_sm=228 * KB, max_shared_per_group=227 * KB,
    reserved_shared_per_group=1 * KB, shared_allocation_unit=128)

ARCHITECTURES = {a.name: a for a in (SM_80, SM_90)}

# The highest PTX ISA each ptxas release reads; ILGPU 1.5.3 writes `.version 8.0`/`8.3`.
PTX_ISA_OF_RELEASE = {(11, 8): (7, 8), (12, 0): (8, 0), (12, 1): (8, 1), (12, 2): (8, 2)}


def round_up(value, unit):
    return (value + unit - 1) // unit * unit


@dataclass(frozen=True)
class Occupancy:
    groups_per_sm: int
    warps_per_sm: int
    occupancy: float
    limiter: str
    note: str = ""


def occupancy(arch, threads_per_group, registers_per_thread, shared_bytes_per_group):
    """Theoretical occupancy of one kernel launch, with the rules of NVIDIA's occupancy calculator.

    shared_bytes_per_group is static plus dynamic shared memory (without the driver's reservation).
    """
    if threads_per_group < 1 or threads_per_group > arch.max_threads_per_group:
        raise ValueError(f"{threads_per_group} threads per group: expected 1..{arch.max_threads_per_group}")
    if registers_per_thread > arch.max_registers_per_thread:
        raise ValueError(f"{registers_per_thread} registers per thread: at most {arch.max_registers_per_thread}")
    warps_per_group = math.ceil(threads_per_group / arch.warp_size)
    limits = {
        "warps": arch.max_warps_per_sm // warps_per_group,
        "groups": arch.max_groups_per_sm,
    }
    registers_per_warp = round_up(max(registers_per_thread, 1) * arch.warp_size, arch.register_allocation_unit)
    if registers_per_warp * warps_per_group > arch.max_registers_per_group:
        limits["registers"] = 0
    else:
        per_partition = arch.registers_per_sm // arch.register_sub_partitions // registers_per_warp
        limits["registers"] = per_partition * arch.register_sub_partitions // warps_per_group
    allocated_shared = round_up(shared_bytes_per_group + arch.reserved_shared_per_group, arch.shared_allocation_unit)
    limits["shared memory"] = (0 if shared_bytes_per_group > arch.max_shared_per_group
                               else arch.shared_per_sm // allocated_shared)
    groups = min(limits.values())
    # Name every limit that binds, in a fixed order, so ties read the same on every run.
    limiter = "/".join(k for k in ("registers", "shared memory", "warps", "groups") if limits[k] == groups)
    note = ""
    if shared_bytes_per_group > arch.default_shared_per_group:
        note = f"needs {shared_bytes_per_group} B of shared memory: over the 48 KB a group gets without opt-in"
    warps = groups * warps_per_group
    return Occupancy(groups, warps, warps / arch.max_warps_per_sm, limiter, note)


def auto_group_size(arch, registers_per_thread, shared_bytes_per_group):
    """The group size CUDA's cuOccupancyMaxPotentialBlockSize returns, which ILGPU 1.5.3's CUDA accelerator uses for
    an implicitly grouped kernel (LoadAutoGroupedKernel, no dynamic shared memory, no size limit): from the largest
    group down in steps of a warp, the first size reaching the most resident threads per SM."""
    best_size, best_threads = 0, -1
    size = arch.max_threads_per_group
    while size > 0:
        result = occupancy(arch, size, registers_per_thread, shared_bytes_per_group)
        threads = result.groups_per_sm * size
        if threads > best_threads:
            best_size, best_threads = size, threads
        if best_threads == arch.max_threads_per_sm:
            break
        size -= arch.warp_size
    return best_size


@dataclass
class Resources:
    entry: str
    arch: str
    registers: int
    stack_frame: int
    spill_stores: int
    spill_loads: int
    shared_static: int
    constant: int


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM = re.compile(r"(\d+) bytes cmem\[\d+\]")


def parse_ptxas(text):
    """Per entry function: registers, spills, stack frame, static shared and constant memory from `ptxas -v`.
    ptxas may end a line without a newline before the next "ptxas info" (its stderr lines are unbuffered), so the
    text is split at every "ptxas" marker first. Stack and spills of non-entry functions count towards the entry
    compiled around them."""
    text = re.sub(r"(?<!^)(?=ptxas (info|warning|error|fatal))", "\n", text, flags=re.M)
    results = []
    current = None
    for line in text.splitlines():
        match = _ENTRY.search(line)
        if match:
            current = Resources(match.group(1), match.group(2), 0, 0, 0, 0, 0, 0)
            results.append(current)
            continue
        if current is None:
            continue
        match = _FRAME.search(line)
        if match:
            current.stack_frame += int(match.group(1))
            current.spill_stores += int(match.group(2))
            current.spill_loads += int(match.group(3))
            continue
        match = _USED.search(line)
        if match:
            current.registers = int(match.group(1))
            smem = _SMEM.search(line)
            current.shared_static = int(smem.group(1)) if smem else 0
            current.constant = sum(int(c) for c in _CMEM.findall(line))
    return results


def ptxas_release(ptxas):
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    if not match:
        raise SystemExit(f"cannot read the release of {ptxas}:\n{out}")
    line = next(l for l in out.splitlines() if "release" in l)
    return (int(match.group(1)), int(match.group(2))), line.strip()


def lower_version(ptx, isa):
    """Rewrites `.version X.Y` to the ISA ptxas reads when X.Y is newer. Valid while the kernel uses no instruction
    introduced after that ISA: ptxas then rejects the file and the report stops with its message."""
    def replace(match):
        version = (int(match.group(1)), int(match.group(2)))
        return f".version {isa[0]}.{isa[1]}" if version > isa else match.group(0)
    return re.sub(r"^\.version (\d+)\.(\d+)", replace, ptx, count=1, flags=re.M)


def ptx_version(ptx):
    match = re.search(r"^\.version (\d+\.\d+)", ptx, flags=re.M)
    return match.group(1) if match else "none"


def run_ptxas(ptxas, isa, path, arch):
    source = path.read_text()
    if isa is not None:
        source = lower_version(source, isa)
    with tempfile.TemporaryDirectory() as tmp:
        lowered = Path(tmp) / path.name
        lowered.write_text(source)
        proc = subprocess.run([ptxas, "-v", f"-arch={arch}", str(lowered), "-o", str(Path(tmp) / "out.cubin")],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        hint = ""
        if isa is not None:
            hint = (f"\nThis ptxas reads PTX ISA <= {isa[0]}.{isa[1]}; the report lowered the file's .version to it, "
                    "which is valid only while the kernel uses no newer instruction. Point PTXAS at a newer ptxas "
                    "(CUDA 12.3 or later reads ILGPU's PTX unchanged).")
        raise SystemExit(f"ptxas failed on {path} for {arch}:\n{proc.stderr}{proc.stdout}{hint}")
    entries = parse_ptxas(proc.stderr + proc.stdout)
    if len(entries) != 1:
        raise SystemExit(f"expected one entry function in {path}, ptxas reported {len(entries)}:\n{proc.stderr}")
    return entries[0]


def analyse(manifest, ptx_dir, ptxas):
    release, version_line = ptxas_release(ptxas)
    isa = PTX_ISA_OF_RELEASE.get(release)
    if isa is None and release < (12, 3):
        raise SystemExit(f"ptxas release {release[0]}.{release[1]} is not supported; use 11.8 or 12.0 and later")
    rows = []
    versions = set()
    for kernel in manifest["kernels"]:
        row = {"name": kernel["name"], "grouping": kernel["grouping"], "geometry": kernel["geometry"],
               "dynamicSharedBytes": kernel["dynamicSharedBytes"], "arch": {}}
        for arch_name, arch in ARCHITECTURES.items():
            versions.add(ptx_version((ptx_dir / kernel["files"][arch_name]).read_text()))
            res = run_ptxas(ptxas, isa, ptx_dir / kernel["files"][arch_name], arch_name)
            shared = res.shared_static + kernel["dynamicSharedBytes"]
            threads = kernel["threadsPerGroup"]
            auto = threads is None and kernel["grouping"] == "Implicit"
            if auto:
                threads = auto_group_size(arch, res.registers, shared)
            entry = {"registers": res.registers, "spillStores": res.spill_stores, "spillLoads": res.spill_loads,
                     "stackFrame": res.stack_frame, "sharedStatic": res.shared_static, "constant": res.constant,
                     "threadsPerGroup": threads, "autoGroupSize": auto}
            if threads is not None:
                occ = occupancy(arch, threads, res.registers, shared)
                entry.update({"groupsPerSm": occ.groups_per_sm, "warpsPerSm": occ.warps_per_sm,
                              "occupancy": occ.occupancy, "limiter": occ.limiter, "note": occ.note})
            row["arch"][arch_name] = entry
        rows.append(row)
    lowering = "PTX passed to ptxas unchanged"
    if isa is not None:
        lowering = (f"ILGPU wrote PTX ISA {', '.join(sorted(versions))}; `.version` lowered to {isa[0]}.{isa[1]}, the "
                    "newest this ptxas reads, and ptxas accepted every instruction")
    return rows, f"{version_line} ({lowering})"


def is_good(row):
    return all(a["spillStores"] == 0 and a["spillLoads"] == 0 and a.get("occupancy", 0) >= 0.5
               for a in row["arch"].values())


def percent(entry):
    return "unknown" if "occupancy" not in entry else f"{entry['occupancy'] * 100:.0f}%"


def load_reasons(path):
    """Reasons for kernels known to be below the goal: (name prefix, reason) per non-comment line of a TSV file."""
    if path is None or not path.exists():
        return []
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            prefix, _, reason = line.partition("\t")
            pairs.append((prefix.strip(), reason.strip()))
    return pairs


def reason_for(name, reasons):
    return next((reason for prefix, reason in reasons if name.startswith(prefix)), None)


def markdown(rows, version_line, command, reasons=()):
    good = sum(is_good(r) for r in rows)
    lines = [
        "# Kernel report: registers, spills, shared memory, theoretical occupancy",
        "",
        "Written by `tools/kernel-report/report.sh` from the PTX that ILGPU 1.5.3 generates for every registered kernel",
        "(`retnet kernels --ptx`), assembled by ptxas for sm_80 (A100) and sm_90 (H100/H200). No GPU is involved:",
        "the numbers are what the hardware would allocate, and occupancy is theoretical (resident warps / 64), computed",
        "with the rules of NVIDIA's occupancy calculator from the registers, the shared memory and the group size.",
        "",
        f"Command: `{command}`  ",
        f"ptxas: {version_line}.",
        "",
        f"**{good} of {len(rows)} kernels have 0 spills and ≥ 50% theoretical occupancy on both architectures.**",
        "",
        "Threads per group: explicitly grouped kernels at the size their launcher uses on an NVIDIA GPU (group limit",
        "1024, warp 32; the same function computes both). Implicitly grouped kernels (marked *auto*) get their size",
        "from ILGPU 1.5.3 when loaded: it calls CUDA's `cuOccupancyMaxPotentialBlockSize` with no dynamic shared memory,",
        "which returns the largest group (in warp steps) that reaches the most resident threads per SM; the report",
        "applies that same search. Shared memory is static (ptxas) + dynamic (the launcher's request) per group.",
        "Limiter: the per-SM resource that bounds the resident groups (several when they tie). The row reductions",
        "(normalisations, cross-entropy, `Reduce`) are listed in both variants: on NVIDIA the device policy launches",
        "the sub-group one; the shared-memory tree is shown with the shape its launcher would give it (the `rule`",
        "field of kernel-report.json says which variant the policy picks).",
        "",
        "| kernel | threads/group | regs sm_80/sm_90 | spills st/ld B | smem static+dyn B | occ. sm_80 | occ. sm_90 "
        "| limiter sm_80 / sm_90 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        a80, a90 = row["arch"]["sm_80"], row["arch"]["sm_90"]
        threads = "unknown" if a80["threadsPerGroup"] is None else str(a80["threadsPerGroup"])
        if a80["autoGroupSize"]:
            threads = (f"{a80['threadsPerGroup']} auto" if a80["threadsPerGroup"] == a90["threadsPerGroup"]
                       else f"{a80['threadsPerGroup']}/{a90['threadsPerGroup']} auto")
        spills = "/".join(f"{a['spillStores']}/{a['spillLoads']}" for a in (a80, a90))
        if a80["spillStores"] == a90["spillStores"] and a80["spillLoads"] == a90["spillLoads"]:
            spills = f"{a80['spillStores']}/{a80['spillLoads']}"
        smem = f"{max(a80['sharedStatic'], a90['sharedStatic'])}+{row['dynamicSharedBytes']}"
        limiter = " / ".join(a.get("limiter", "unknown") for a in (a80, a90))
        mark = "" if is_good(row) else " ⚠"
        lines.append(f"| `{row['name']}`{mark} | {threads} | {a80['registers']}/{a90['registers']} | {spills} | {smem} "
                     f"| {percent(a80)} | {percent(a90)} | {limiter} |")
    notes = [f"- `{r['name']}` {n}: {a['note']}" for r in rows for n, a in r["arch"].items() if a.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", "⚠: spills, or under 50% theoretical occupancy on an architecture.", ""]
    below = [r for r in rows if not is_good(r)]
    if below:
        lines += ["## Below the goal, and why", "",
                  "Reasons come from `tools/kernel-report/below-goal.tsv`; a kernel without one is marked unexplained.", ""]
        for row in below:
            lines.append(f"- `{row['name']}`: {reason_for(row['name'], reasons) or '**unexplained**'}")
        lines.append("")
    lines += [
        "## Reading it",
        "",
        "- Goal: 0 spill bytes and ≥ 50% theoretical occupancy for every kernel on both architectures. Spills are the",
        "  bytes ptxas stores to and reloads from local memory (per thread, summed over the entry and its callees);",
        "  the JSON beside this file also has each kernel's stack frame (local memory for spills, calls and arrays",
        "  indexed at run time) and constant memory.",
        "- The hardware limits used, per SM (NVIDIA's occupancy calculator values for compute capability 8.0 and 9.0):",
        "",
        "| | threads | warps | groups | registers | register unit (per warp) | max registers/thread "
        "| shared memory | max per group | reserved per group | shared unit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {a.name} ({a.gpu}) | {a.max_threads_per_sm} | {a.max_warps_per_sm} | {a.max_groups_per_sm} "
          f"| {a.registers_per_sm} | {a.register_allocation_unit} | {a.max_registers_per_thread} "
          f"| {a.shared_per_sm // KB} KB | {a.max_shared_per_group // KB} KB | {a.reserved_shared_per_group} B "
          f"| {a.shared_allocation_unit} B |" for a in ARCHITECTURES.values()],
        "",
        "  Registers are allocated per warp, rounded up to 256, and per SM sub-partition (4 per SM), so the register",
        "  limit moves in steps of 4 warps. A group asking for more than 48 KB of shared memory would need an opt-in",
        "  that ILGPU does not make; the report flags it.",
        "- Every registered specialisation is listed, including ones the library launches only on devices with a",
        "  smaller group limit; their figures are what they would get on these GPUs.",
        "- The driver compiles PTX with its own (newer) ptxas when it loads a kernel, so register counts on a real",
        "  GPU can differ by a few from these; the report is a static estimate to catch spills and occupancy cliffs,",
        "  not a measurement.",
        "- `tools/kernel-report/report.sh --self-test` runs the calculator's and the parser's unit tests (CI runs it).",
        "",
    ]
    return "\n".join(lines)


class SelfTest(unittest.TestCase):
    data = Path(__file__).resolve().parent / "testdata"

    def test_full_occupancy_with_few_registers(self):
        result = occupancy(SM_80, 256, 32, 0)
        self.assertEqual((result.groups_per_sm, result.occupancy), (8, 1.0))

    def test_registers_limit_256_threads_at_128_registers_to_a_quarter(self):
        result = occupancy(SM_80, 256, 128, 0)
        self.assertEqual((result.groups_per_sm, result.occupancy, result.limiter), (2, 0.25, "registers"))

    def test_register_allocation_rounds_to_256_per_warp_and_4_warps(self):
        # 40 registers: 1280 per warp, 12 warps per sub-partition, 48 warps: 6 groups of 256 threads (75%).
        result = occupancy(SM_90, 256, 40, 8320)
        self.assertEqual((result.groups_per_sm, result.occupancy, result.limiter), (6, 0.75, "registers"))
        # 33 registers round up to 40 per thread (1280 per warp), like 40.
        self.assertEqual(occupancy(SM_80, 256, 33, 0).groups_per_sm, 6)

    def test_shared_memory_limit_counts_the_reserved_kilobyte(self):
        # 48 KB + 1 KB reserved = 49 KB per group: 3 groups in 164 KB (sm_80), 4 in 228 KB (sm_90).
        self.assertEqual(occupancy(SM_80, 128, 16, 48 * KB).groups_per_sm, 3)
        self.assertEqual(occupancy(SM_80, 128, 16, 48 * KB).limiter, "shared memory")
        self.assertEqual(occupancy(SM_90, 128, 16, 48 * KB).groups_per_sm, 4)

    def test_small_groups_are_limited_by_the_group_count(self):
        result = occupancy(SM_80, 32, 16, 0)
        self.assertEqual((result.groups_per_sm, result.occupancy, result.limiter), (32, 0.5, "groups"))

    def test_negative_control_a_register_heavy_kernel_is_not_reported_full(self):
        self.assertLess(occupancy(SM_80, 1024, 64, 0).occupancy, 1.0)
        self.assertEqual(occupancy(SM_80, 1024, 65, 0).groups_per_sm, 0)
        with self.assertRaises(ValueError):
            occupancy(SM_80, 2048, 32, 0)

    def test_auto_group_size_is_the_largest_reaching_full_occupancy(self):
        self.assertEqual(auto_group_size(SM_80, 32, 0), 1024)
        # 72 registers: 2304 per warp, 7 warps per sub-partition, 28 warps; 896 threads (28 warps) is the largest.
        self.assertEqual(auto_group_size(SM_80, 72, 0), 896)

    def test_parses_spills_registers_shared_and_constant_memory(self):
        (res,) = parse_ptxas((self.data / "ptxas-spills-sm80.txt").read_text())
        self.assertEqual((res.entry, res.arch, res.registers), ("Kernel_Tiled", "sm_80", 24))
        self.assertEqual((res.stack_frame, res.spill_stores, res.spill_loads), (64, 100, 116))
        self.assertEqual((res.shared_static, res.constant), (8320, 532))

    def test_parses_output_without_constant_memory_or_spills(self):
        (res,) = parse_ptxas((self.data / "ptxas-gemm-sm90.txt").read_text())
        self.assertEqual((res.arch, res.registers, res.spill_stores, res.shared_static, res.constant),
                         ("sm_90", 40, 0, 8320, 0))

    def test_negative_control_text_without_an_entry_yields_nothing(self):
        self.assertEqual(parse_ptxas("ptxas info    : Used 24 registers, 8320 bytes smem\n"), [])

    def test_goal_rejects_spills_and_occupancy_under_half(self):
        good = {"spillStores": 0, "spillLoads": 0, "occupancy": 0.5}
        self.assertTrue(is_good({"arch": {"sm_80": good, "sm_90": good}}))
        self.assertFalse(is_good({"arch": {"sm_80": good, "sm_90": dict(good, spillLoads=4)}}))
        self.assertFalse(is_good({"arch": {"sm_80": dict(good, occupancy=0.46875), "sm_90": good}}))
        self.assertFalse(is_good({"arch": {"sm_80": {"spillStores": 0, "spillLoads": 0}, "sm_90": good}}))

    def test_reasons_match_by_prefix_and_leave_others_unexplained(self):
        reasons = [("GemmKernels.Tiled<GemmTile128x128>", "by design")]
        self.assertEqual(reason_for("GemmKernels.Tiled<GemmTile128x128>", reasons), "by design")
        self.assertIsNone(reason_for("GemmKernels.Tiled<GemmTile64x64>", reasons))

    def test_lowers_only_newer_ptx_versions(self):
        self.assertIn(".version 7.8\n", lower_version("//\n.version 8.3\n.target sm_80\n", (7, 8)))
        self.assertIn(".version 7.0\n", lower_version(".version 7.0\n", (7, 8)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-test", action="store_true", help="run the unit tests and exit")
    parser.add_argument("--ptx-dir", type=Path, help="folder written by `retnet kernels --ptx`")
    parser.add_argument("--ptxas", help="the ptxas binary")
    parser.add_argument("--markdown", type=Path, help="Markdown report to write")
    parser.add_argument("--json", type=Path, help="JSON report to write")
    parser.add_argument("--command", default="tools/kernel-report/report.sh", help="command line shown in the report")
    parser.add_argument("--reasons", type=Path, default=Path(__file__).with_name("below-goal.tsv"),
                        help="TSV of kernel name prefixes and why they are below the goal")
    args = parser.parse_args()
    if args.self_test:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
        sys.exit(0 if unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful() else 1)
    if not (args.ptx_dir and args.ptxas and args.markdown and args.json):
        parser.error("--ptx-dir, --ptxas, --markdown and --json are required")
    manifest = json.loads((args.ptx_dir / "manifest.json").read_text())
    rows, version_line = analyse(manifest, args.ptx_dir, args.ptxas)
    reasons = load_reasons(args.reasons)
    args.markdown.write_text(markdown(rows, version_line, args.command, reasons))
    args.json.write_text(json.dumps({"ptxas": version_line, "command": args.command,
                                     "architectures": {n: asdict(a) for n, a in ARCHITECTURES.items()},
                                     "kernels": rows}, indent=2) + "\n")
    good = sum(is_good(r) for r in rows)
    print(f"{good} of {len(rows)} kernels: 0 spills and >= 50% theoretical occupancy on sm_80 and sm_90")
    for row in rows:
        if not is_good(row):
            details = "; ".join(f"{n}: {a['spillStores']}/{a['spillLoads']} B spilled, {percent(a)}, "
                                f"{a.get('limiter', 'unknown')}" for n, a in row["arch"].items())
            print(f"  {row['name']}: {details}" + ("" if reason_for(row["name"], reasons) else " (unexplained)"))


if __name__ == "__main__":
    main()
