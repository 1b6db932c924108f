#!/usr/bin/python3
"""
Writes unicode_tables.h: the code point ranges of the Unicode classes the Llama 3
pre-tokenizer regex uses, \\p{L} (letters), \\p{N} (numbers) and \\s (White_Space).

Reads the Unicode Character Database from Debian's unicode-data package
(apt-get install -y unicode-data): UnicodeData.txt for general categories,
PropList.txt for White_Space.

Hugging Face tokenizers' regex engine (Oniguruma) knows Unicode 16.0; Debian bookworm's
unicode-data stops at 15.0. The letters and numbers assigned in 15.1 and 16.0 are listed
below (AFTER_15_0), so tokenizer.c splits text exactly as Hugging Face does. They were
found by asking Hugging Face tokenizers itself how it splits each code point unassigned
in 15.0 ("X's" -> "X" + "'s" when X is a letter or number), and the same probe agrees
with the 15.0 categories on every assigned code point.

usage: /usr/bin/python3 test/gen_unicode_tables.py [--ucd /usr/share/unicode] [--out unicode_tables.h]
"""
import argparse
import os
import sys


# (lo, hi) inclusive: letters (general category L*) and numbers (N*) new in Unicode 15.1 / 16.0
AFTER_15_0 = {
    "L": [
    (0x1C89, 0x1C8A), (0xA7CB, 0xA7CD), (0xA7DA, 0xA7DC), (0x105C0, 0x105F3),
    (0x10D4A, 0x10D65), (0x10D6F, 0x10D85), (0x10EC2, 0x10EC4), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113B7),
    (0x113D1, 0x113D1), (0x113D3, 0x113D3), (0x11BC0, 0x11BE0), (0x13460, 0x143FA),
    (0x16100, 0x1611D), (0x16D40, 0x16D6C), (0x18CFF, 0x18CFF), (0x1E5D0, 0x1E5ED),
    (0x1E5F0, 0x1E5F0), (0x2EBF0, 0x2EE5D),
    ],
    "N": [
    (0x10D40, 0x10D49), (0x116D0, 0x116E3), (0x11BF0, 0x11BF9), (0x16130, 0x16139),
    (0x16D70, 0x16D79), (0x1CCF0, 0x1CCF9), (0x1E5F1, 0x1E5FA),
    ],
}


def parse_ranges_file(path, want):
    """Lines 'XXXX(..YYYY) ; value # ...' -> list of (lo, hi) for lines whose value is want."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cps, value = [s.strip() for s in line.split(";")[:2]]
            if want is not None and value != want:
                continue
            lo, _, hi = cps.partition("..")
            out.append((int(lo, 16), int(hi or lo, 16), value))
    return out


def code_point_ages(ucd):
    """code point -> (major, minor) of the Unicode version that assigned it."""
    age = {}
    for lo, hi, value in parse_ranges_file(os.path.join(ucd, "DerivedAge.txt"), None):
        major, minor = value.split(".")
        for cp in range(lo, hi + 1):
            age[cp] = (int(major), int(minor))
    return age


def general_categories(ucd):
    """code point -> two-letter general category; '<..., First>/<..., Last>' pairs are ranges."""
    category = {}
    first = None
    with open(os.path.join(ucd, "UnicodeData.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.split(";")
            cp, name, cat = int(fields[0], 16), fields[1], fields[2]
            if name.endswith(", First>"):
                first = cp
                continue
            if name.endswith(", Last>"):
                for c in range(first, cp + 1):
                    category[c] = cat
                continue
            category[cp] = cat
    return category


def to_ranges(code_points):
    ranges = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return ranges


def c_array(name, ranges):
    lines = [f"static const uint32_t {name}[{len(ranges)}][2] = {{"]
    row = []
    for lo, hi in ranges:
        row.append(f"{{0x{lo:04X},0x{hi:04X}}}")
        if len(row) == 5:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ucd", default="/usr/share/unicode")
    parser.add_argument("--max_age", default=None, help="leave out code points newer than this version")
    parser.add_argument("--out", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unicode_tables.h")))
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.ucd, "UnicodeData.txt")):
        sys.exit(f"error: {args.ucd}/UnicodeData.txt not found; install it with: apt-get install -y unicode-data")
    major, minor = (int(x) for x in args.max_age.split(".")) if args.max_age else (99, 0)
    age = code_point_ages(args.ucd)
    category = general_categories(args.ucd)

    def in_version(cp):
        return cp in age and age[cp] <= (major, minor)

    letters = [cp for cp, cat in category.items() if cat[0] == "L" and in_version(cp)]
    numbers = [cp for cp, cat in category.items() if cat[0] == "N" and in_version(cp)]
    if args.max_age is None:
        for lo, hi in AFTER_15_0["L"]:
            letters.extend(range(lo, hi + 1))
        for lo, hi in AFTER_15_0["N"]:
            numbers.extend(range(lo, hi + 1))
    version = args.max_age or "16.0"
    spaces = []
    for lo, hi, _ in parse_ranges_file(os.path.join(args.ucd, "PropList.txt"), "White_Space"):
        spaces.extend(cp for cp in range(lo, hi + 1) if in_version(cp))

    with open(os.path.join(args.ucd, "ReadMe.txt"), encoding="utf-8") as f:
        ucd_version = next((line.split("Version ")[1].split(" ")[0] for line in f if "for Version" in line), "?")
    letter_ranges, number_ranges, space_ranges = to_ranges(letters), to_ranges(numbers), to_ranges(spaces)
    text = f"""// unicode_tables.h: generated by test/gen_unicode_tables.py; do not edit.
// Classes as of Unicode {version}, the version Hugging Face tokenizers' regex engine uses: the
// Unicode Character Database {ucd_version} (Debian unicode-data) plus the 15.1/16.0 letters and
// numbers listed in the script. Sorted, non-overlapping inclusive ranges [lo, hi].
// \\p{{L}}: {len(letters)} code points in {len(letter_ranges)} ranges; \\p{{N}}: {len(numbers)} in {len(number_ranges)};
// White_Space (\\s): {len(spaces)} code points.
#ifndef UNICODE_TABLES_H
#define UNICODE_TABLES_H
#include <stdint.h>

#define UNICODE_TABLES_VERSION "{args.max_age or '16.0'}"

{c_array("unicode_letter_ranges", letter_ranges)}

{c_array("unicode_number_ranges", number_ranges)}

{c_array("unicode_space_ranges", space_ranges)}

#endif
"""
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}: {len(letter_ranges)} letter, {len(number_ranges)} number, "
          f"{len(space_ranges)} space ranges (Unicode {args.max_age or '16.0'})")


if __name__ == "__main__":
    main()
