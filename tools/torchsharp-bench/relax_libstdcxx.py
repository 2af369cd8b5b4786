#!/usr/bin/env python3
"""Lets TorchSharp's native glue load against an older libstdc++ (Debian 12 has GCC 12's, GLIBCXX_3.4.30).

libLibTorchSharp.so of TorchSharp 0.107 is built with GCC 13, so it asks libstdc++.so.6 for the version
GLIBCXX_3.4.32 only because GCC 13's <iostream> names std::ios_base_library_init() with an assembler `.globl`
to pull that version in: no relocation refers to the symbol, nothing calls it, so it is never bound. The dynamic
linker still refuses the library when the version is missing. This script marks such a version requirement weak
(VER_FLG_WEAK: a missing weak version is not an error) in the given copy of the library, only when every symbol of
that version is unreferenced by relocations; anything else is refused. It changes nothing when the system's
libstdc++.so.6 has every version the library needs.

usage: relax_libstdcxx.py PATH/TO/libLibTorchSharp.so   (a build output copy, never the NuGet cache)
"""
import struct
import subprocess
import sys

VER_FLG_WEAK = 0x2
SHT_DYNSYM, SHT_RELA, SHT_GNU_VERNEED, SHT_GNU_VERSYM = 11, 4, 0x6FFFFFFE, 0x6FFFFFFF


def system_libstdcxx():
    for line in subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout.splitlines():
        if line.strip().startswith("libstdc++.so.6 ") and "x86-64" in line:
            return line.split("=>")[1].strip()
    sys.exit("relax_libstdcxx: no x86-64 libstdc++.so.6 in the ldconfig cache")


def sections(data):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    for i in range(shnum):
        name, kind, _, _, offset, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
        yield {"type": kind, "offset": offset, "size": size, "link": link, "entsize": entsize, "index": i}


def string_at(data, table, offset):
    start = table["offset"] + offset
    return data[start:data.index(b"\0", start)].decode()


def main(path):
    data = bytearray(open(path, "rb").read())
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"relax_libstdcxx: {path} is not a 64-bit ELF file")
    provided = open(system_libstdcxx(), "rb").read()
    table = list(sections(data))
    verneed = next(s for s in table if s["type"] == SHT_GNU_VERNEED)
    versym = next(s for s in table if s["type"] == SHT_GNU_VERSYM)
    dynsym = next(s for s in table if s["type"] == SHT_DYNSYM)
    strings = table[verneed["link"]]
    symbol_strings = table[dynsym["link"]]
    referenced = set()
    for rela in (s for s in table if s["type"] == SHT_RELA and s["link"] == dynsym["index"]):
        for at in range(rela["offset"], rela["offset"] + rela["size"], 24):
            referenced.add(struct.unpack_from("<Q", data, at + 8)[0] >> 32)

    changed = []
    need = verneed["offset"]
    while True:
        _, count, file_name, aux, following = struct.unpack_from("<HHIII", data, need)
        if string_at(data, strings, file_name) == "libstdc++.so.6":
            entry = need + aux
            for _ in range(count):
                _, flags, index, name, following_aux = struct.unpack_from("<IHHII", data, entry)
                version = string_at(data, strings, name)
                if not flags & VER_FLG_WEAK and version.encode() + b"\0" not in provided:
                    symbols = [i for i in range(dynsym["size"] // 24)
                               if struct.unpack_from("<H", data, versym["offset"] + 2 * i)[0] & 0x7FFF == index]
                    bound = [i for i in symbols if i in referenced]
                    if bound:
                        names = [string_at(data, symbol_strings, struct.unpack_from("<I", data, dynsym["offset"] + 24 * i)[0])
                                 for i in bound]
                        sys.exit(f"relax_libstdcxx: {version} is needed for bound symbols {names}; install a newer libstdc++")
                    struct.pack_into("<H", data, entry + 4, flags | VER_FLG_WEAK)
                    changed.append(version)
                entry += following_aux
        if following == 0:
            break
        need += following
    if changed:
        open(path, "wb").write(data)
        print(f"relax_libstdcxx: marked {', '.join(changed)} weak in {path} (no relocation uses it)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
