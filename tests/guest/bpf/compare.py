#!/usr/bin/env python3
"""Host side of guest_bpf_lsm_e2e: compares imarotd's list (eBPF LSM source)
with kernel IMA's list from the same guest run, and checks the field cases.

Usage: compare.py RESULTS_DIR
RESULTS_DIR contains kernel.bin, imarotd.bin, imarotd-burst.bin, cases.txt and
imarotd-burst.log as the guest payload wrote them. Prints one line per check
and exits 1 when any check fails.
"""
import re
import struct
import sys
from collections import defaultdict
from pathlib import Path


def parse_list(path, end=None):
    """Returns (pcr, template_name, template_data) for each entry of a binary
    measurement list in the kernel's little-endian format, up to byte `end`."""
    data = Path(path).read_bytes()
    if end is not None:
        data = data[:end]
    entries = []
    offset = 0
    while offset < len(data):
        pcr, = struct.unpack_from("<I", data, offset)
        offset += 4 + 20  # register index, SHA-1 template digest
        name_length, = struct.unpack_from("<I", data, offset)
        offset += 4
        name = data[offset:offset + name_length].decode()
        offset += name_length
        data_length, = struct.unpack_from("<I", data, offset)
        offset += 4
        entries.append((pcr, name, data[offset:offset + data_length]))
        offset += data_length
    return entries


def fields(template_data):
    """Splits template data into its length-prefixed fields."""
    result = []
    offset = 0
    while offset < len(template_data):
        length, = struct.unpack_from("<I", template_data, offset)
        offset += 4
        result.append(template_data[offset:offset + length])
        offset += length
    return result


def file_name(template_data):
    """The n-ng field without its NUL: the file name as recorded."""
    return fields(template_data)[1].rstrip(b"\0")


def digest(template_data):
    return fields(template_data)[0]


def is_violation(template_data):
    value = digest(template_data)
    colon = value.find(b":\0")
    return set(value[colon + 2:]) == {0}


failures = 0


def check(condition, message):
    global failures
    print(("ok: " if condition else "FAILED: ") + message)
    if not condition:
        failures += 1


def main():
    results = Path(sys.argv[1])
    kernel = parse_list(results / "kernel.bin")
    daemon = parse_list(results / "imarotd.bin")

    def by_name(entries, pcr):
        table = defaultdict(list)
        for entry_pcr, template, data in entries:
            if entry_pcr != pcr or template == "ima" or data[4:].startswith(b"boot_aggregate"):
                continue
            if file_name(data) == b"boot_aggregate":
                continue
            table[file_name(data)].append((template, data))
        return table

    kernel_files = by_name(kernel, 10)
    daemon_files = by_name(daemon, 11)
    check(len(kernel_files) > 0, f"kernel IMA measured {len(kernel_files)} names into PCR 10")
    check(len(daemon_files) > 0, f"imarotd measured {len(daemon_files)} names into PCR 11")

    # Every entry of a name both lists have must be byte-identical to one
    # of the kernel's entries for that name.
    # Files under /payload/out change while the guest runs (logs, this
    # test's own records), so the two lists hash them at different moments.
    # Files kernel IMA measured before imarotd was ready have their first
    # access, and so maybe another template, only in the kernel's list.
    before = int((results / "kernel-bytes-before.txt").read_text())
    early = set(by_name(parse_list(results / "kernel.bin", before), 10))
    both = sorted(n for n in set(kernel_files) & set(daemon_files)
                  if not n.startswith(b"/payload/out/") and n not in early)
    print(f"{len(early & set(daemon_files))} names in both lists were measured by kernel IMA before imarotd was ready")
    mismatched = []
    for name in both:
        kernel_data = {data for _, data in kernel_files[name]}
        for _, data in daemon_files[name]:
            if data not in kernel_data:
                mismatched.append(name)
    check(not mismatched, f"{len(both)} names in both lists, template data byte-identical "
                          f"(mismatched: {[n.decode(errors='replace') for n in mismatched[:10]]})")

    # Names under the test tree measured by one list only.
    tree = b"/var/tmp/e2e/"
    kernel_only = [n for n in kernel_files if n.startswith(tree) and n not in daemon_files
                   and not n.startswith(tree + b"burst/")]
    daemon_only = [n for n in daemon_files if n.startswith(tree) and n not in kernel_files]
    check(not kernel_only, f"no test file measured by kernel IMA only ({[n.decode(errors='replace') for n in kernel_only[:10]]})")
    check(not daemon_only, f"no test file measured by imarotd only ({[n.decode(errors='replace') for n in daemon_only[:10]]})")

    cases = {}
    for line in (results / "cases.txt").read_text().splitlines():
        case, _, name = line.partition("\t")
        # Both kernel IMA and imarotd record a space in a name as "_".
        cases[case] = name.encode().replace(b" ", b"_")

    def entries(table, case):
        return table.get(cases[case], [])

    def count_real(table, case):
        return len([1 for _, data in entries(table, case) if not is_violation(data)])

    def count_violations(table, case):
        return len([1 for _, data in entries(table, case) if is_violation(data)])

    for case in ("exec-twice", "symlink", "dotdot", "deleted", "deleted-fexecve", "live-deleted-name", "shebang",
                 "shebang-env", "memfd"):
        if case == "memfd":
            continue
        check(count_real(daemon_files, case) == 1 and count_real(kernel_files, case) == 1,
              f"{case}: one entry for {cases[case].decode()} in each list "
              f"(imarotd {count_real(daemon_files, case)}, kernel {count_real(kernel_files, case)})")
    check(count_real(daemon_files, "exec-dynamic") == 1,
          f"exec-dynamic: one entry for the program run directly and through the loader "
          f"({count_real(daemon_files, 'exec-dynamic')})")
    check(count_real(daemon_files, "mutable") == 2 and count_real(kernel_files, "mutable") == 2,
          f"mutable: two entries, one per content (imarotd {count_real(daemon_files, 'mutable')}, "
          f"kernel {count_real(kernel_files, 'mutable')})")
    # Kernel IMA also measures imarotd's own reads of the file for hashing,
    # which are further readers while the writer is open, so it may list more.
    for case in ("open-writers", "tomtou", "tomtou-cached"):
        check(count_violations(daemon_files, case) == 1 and count_violations(kernel_files, case) >= 1,
              f"{case}: one violation entry from imarotd ({count_violations(daemon_files, case)}), at least one "
              f"from kernel IMA ({count_violations(kernel_files, case)})")
    check(count_real(daemon_files, "no-shebang") == 1 and not any(
        t == "ima-ng" for t, _ in entries(daemon_files, "no-shebang")),
        "no-shebang: the script is read (ima-sig), never executed")
    check(b"" not in daemon_files, "no entry with an empty name")
    check(cases["deep"] in daemon_files and cases["deep"] in kernel_files,
          "deep: the file beyond PATH_MAX is named by its last component in both lists")
    for name in daemon_files:
        if name.startswith(tree + b"long") and len(name) > 200:
            check(name in kernel_files, f"long path of {len(name)} bytes in both lists")

    # memfd: the kernel's name for it, and imarotd's, for both ways of running it.
    memfd_kernel = [n for n in kernel_files if b"imarot-memfd" in n]
    memfd_daemon = [n for n in daemon_files if b"imarot-memfd" in n]
    print(f"memfd names: kernel {memfd_kernel}, imarotd {memfd_daemon}")
    check(len(memfd_kernel) == 1 and memfd_kernel == memfd_daemon,
          "memfd: one name, the same in both lists")
    if memfd_kernel:
        name = memfd_kernel[0]
        check(len(kernel_files[name]) == 2 and len(daemon_files[name]) == 2,
              f"memfd: two entries (fexecve and /proc/self/fd), kernel {len(kernel_files[name])}, "
              f"imarotd {len(daemon_files[name])}")

    # Ring buffer overflow: the violation entries count what the kernel lost.
    burst = parse_list(results / "imarotd-burst.bin")
    lost_in_list = 0
    lost_entries = 0
    lost_violations = 0
    for _, _, data in burst:
        match = re.match(rb"\[imarotd\][ _](\d+)[ _]events[ _]lost:[ _]eBPF[ _]ring[ _]buffer[ _]full", file_name(data))
        if match:
            lost_entries += 1
            lost_violations += 1 if is_violation(data) else 0
            lost_in_list += int(match.group(1))
    check(lost_entries == lost_violations, f"the {lost_entries} lost-events entries are violations")
    log = (results / "imarotd-burst.log").read_text(errors="replace")
    match = re.search(r"(\d+) access and (\d+) close records lost", log)
    lost_in_kernel = int(match.group(1)) + int(match.group(2)) if match else -1
    check(lost_in_kernel > 0, f"the burst overflowed the ring buffer ({lost_in_kernel} records lost in the kernel)")
    check(lost_in_list == lost_in_kernel, f"the list's lost-events entries count {lost_in_list}, "
                                          f"the kernel counted {lost_in_kernel}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
