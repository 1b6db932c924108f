// test_quant DIR: llmc/quant.h's int8 and NF4 quantisers and dequantisers against the NumPy
// reference test/quant_reference.py wrote to DIR (test/test_quant.sh runs both): codes and
// scales bit for bit, the dequantised values bit for bit, and a negative control (one code
// changed) that the comparison must catch. Ends with "N passed, M failed".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../llmc/utils.h"
#include "../llmc/quant.h"

static int passed = 0, failed = 0;

static void check(int ok, const char* what, const char* detail) {
    printf("%s %s%s%s\n", ok ? "ok    " : "FAIL  ", what, detail && *detail ? ": " : "", detail ? detail : "");
    if (ok) passed++;
    else failed++;
}

// The file DIR/NAME.SUFFIX, which must hold exactly `bytes` bytes.
static char* read_case_file(const char* dir, const char* name, const char* suffix, size_t bytes) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, suffix);
    size_t len;
    char* data = read_file(path, &len, "; run test/test_quant.sh, which writes it with test/quant_reference.py");
    if (len != bytes) fail("%s: %zu bytes, expected %zu", path, len, bytes);
    return data;
}

// Index of the first byte where a and b differ, or -1.
static long first_difference(const void* a, const void* b, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) {
        if (((const unsigned char*)a)[i] != ((const unsigned char*)b)[i]) return (long)i;
    }
    return -1;
}

// ours vs the reference's `suffix` file, bytes for bytes; prints where they first differ
static void compare_bytes(const char* dir, const char* name, const char* suffix, const void* ours, size_t bytes) {
    char* expected = read_case_file(dir, name, suffix, bytes);
    long at = first_difference(ours, expected, bytes);
    char what[160], detail[160] = "";
    snprintf(what, sizeof(what), "%-22s %-12s %6zu bytes equal to NumPy's", name, suffix, bytes);
    if (at >= 0) snprintf(detail, sizeof(detail), "first difference at byte %ld: %02x vs %02x", at,
                          ((const unsigned char*)ours)[at], (unsigned char)expected[at]);
    check(at < 0, what, detail);
    free(expected);
}

int main(int argc, char** argv) {
    if (argc != 2) fail("usage: test_quant DIR (written by test/quant_reference.py)");
    const char* dir = argv[1];
    char cases_path[512];
    snprintf(cases_path, sizeof(cases_path), "%s/cases.txt", dir);
    FILE* f = fopen(cases_path, "r");
    if (f == NULL) fail("%s: cannot open; run test/test_quant.sh", cases_path);
    char name[128];
    size_t n, block;
    int negative_done = 0;
    while (fscanf(f, "%127s %zu %zu", name, &n, &block) == 3) {
        float* w = (float*)read_case_file(dir, name, "f32", n * sizeof(float));
        size_t int8_blocks = (n + block - 1) / block, nf4_blocks = (n + NF4_BLOCK - 1) / NF4_BLOCK;
        int8_t* q8 = malloc_check(n, "int8 codes");
        float* s8 = malloc_check(int8_blocks * sizeof(float), "int8 scales");
        float* v8 = malloc_check(n * sizeof(float), "int8 values");
        uint8_t* q4 = malloc_check((n + 1) / 2, "nf4 codes");
        float* a4 = malloc_check(nf4_blocks * sizeof(float), "nf4 absmax");
        float* v4 = malloc_check(n * sizeof(float), "nf4 values");
        quantize_int8(q8, s8, w, n, block);
        dequantize_int8(v8, q8, s8, block, 0, n);
        quantize_nf4(q4, a4, w, n);
        dequantize_nf4(v4, q4, a4, 0, n);
        compare_bytes(dir, name, "int8", q8, n);
        compare_bytes(dir, name, "int8_scales", s8, int8_blocks * sizeof(float));
        compare_bytes(dir, name, "int8_values", v8, n * sizeof(float));
        compare_bytes(dir, name, "nf4", q4, (n + 1) / 2);
        compare_bytes(dir, name, "nf4_absmax", a4, nf4_blocks * sizeof(float));
        compare_bytes(dir, name, "nf4_values", v4, n * sizeof(float));
        if (!negative_done && n > 2) {  // negative control: one NF4 code off by one must be caught
            char* expected = read_case_file(dir, name, "nf4", (n + 1) / 2);
            q4[1] ^= 1;
            long at = first_difference(q4, expected, (n + 1) / 2);
            check(at == 1, "negative control: an NF4 code changed in byte 1 is found there", NULL);
            free(expected);
            negative_done = 1;
        }
        free(w); free(q8); free(s8); free(v8); free(q4); free(a4); free(v4);
    }
    fclose(f);
    if (passed + failed == 0) check(0, "no cases read", cases_path);
    printf("%d passed, %d failed\n", passed, failed);
    return failed > 0;
}
