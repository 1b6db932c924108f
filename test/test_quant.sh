#!/bin/bash
# The int8 and NF4 codes of llmc/quant.h against an independent NumPy implementation:
# test/quant_reference.py writes test tensors (ragged last blocks, all-zero blocks, values
# at and beside NF4's decision points, int8's .5 ties) with their codes and scales, and
# ./test_quant quantises the same tensors and compares bit for bit. Needs ./test_quant
# (make test_quant) and Debian's python3-numpy. Ends with "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
dir=test/tmp/quant
rm -rf $dir
if ! /usr/bin/python3 test/quant_reference.py $dir; then
    echo "FAIL   test/quant_reference.py could not write $dir (needs python3-numpy: make test-deps)"
    echo "0 passed, 1 failed"
    exit 1
fi
[ -x ./test_quant ] || { echo "FAIL   ./test_quant is missing (make test_quant)"; echo "0 passed, 1 failed"; exit 1; }
./test_quant $dir
