/*
fuzz.h: what every harness in test/fuzz/ shares. Include it first, then the project's code.

A harness defines LLVMFuzzerTestOneInput(data, size): it writes the input where a parser
reads it (fuzz_write_file) and runs the parser through fuzz_run. Built with
`clang -fsanitize=fuzzer,address,undefined` it is a libFuzzer target (make fuzz); built
with test/fuzz/replay.c it is a plain program that runs the files named on its command
line (make fuzz_replay; test/test_hostile.sh runs the corpus in test/corpus/ that way).

fuzz_run makes one input one call, however it ends:
  - fail() longjmps back (utils.h's fail_jump) instead of exiting: a rejected input is a
    normal return, and fuzz_rejected says which way it went;
  - every allocation the project's code makes is tracked (the macros below route malloc,
    calloc, realloc, aligned_alloc, strdup, strndup, free, mmap and munmap through here,
    and cJSON's through cJSON_InitHooks), and whatever is still allocated or mapped when
    the call ends is released. (tokenizer.c is a separate object, not tracked: the
    harnesses do not call it.) A rejected input leaves its buffers behind by design (fail
    exits the programs), so without this a fuzzer would run out of memory within minutes.
    libFuzzer still gets -detect_leaks=0: LeakSanitizer cannot see that the tracker frees
    them later;
  - the memory an input makes the code hold is measured: over 16 MiB plus 64 times
    the input's size the harness prints what happened and aborts, which both
    libFuzzer and the replay report as a failure. Sizes must be checked against the file
    before they are allocated; this is how a missing check shows up.
Code that allocates persistent state on first use (matmul_init) must run before the first
fuzz_run, outside the tracking.
*/
#ifndef FUZZ_H
#define FUZZ_H
#define TRAIN_NO_MAIN  // train.c and generate.c as libraries: the harness brings its own entry point

// every system header the project's code includes, before the macros below rename the
// allocation functions
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

// ----------------------------------------------------------------------------
// the allocation tracker: a hash table from each live block to its size, so every block
// is exactly what the real allocator (AddressSanitizer's, in the sanitised builds) gave,
// with its redzones on both sides.

typedef struct {
    void* p;        // NULL: empty slot
    size_t size;
    int per_input;  // made inside fuzz_run: released when the call ends
} FuzzBlock;

static FuzzBlock* fuzz_table;             // open addressing, linear probing; capacity a power of two
static size_t fuzz_capacity, fuzz_count;
static int fuzz_inside;                   // within fuzz_run
static size_t fuzz_live, fuzz_limit;      // bytes held by this input, and its limit
static size_t fuzz_input_size;
int fuzz_rejected;                        // the last input was rejected with fail() (replay.c prints it)

static size_t fuzz_slot(const void* p) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (fuzz_capacity - 1);
}

static void fuzz_insert(void* p, size_t size, int per_input) {
    if (2 * (fuzz_count + 1) > fuzz_capacity) {  // grow to keep the table at most half full
        FuzzBlock* old = fuzz_table;
        size_t old_capacity = fuzz_capacity;
        fuzz_capacity = fuzz_capacity ? 2 * fuzz_capacity : 4096;
        fuzz_table = calloc(fuzz_capacity, sizeof(FuzzBlock));
        if (fuzz_table == NULL) { fprintf(stderr, "fuzz: out of memory\n"); abort(); }
        fuzz_count = 0;
        for (size_t i = 0; i < old_capacity; i++) if (old[i].p) fuzz_insert(old[i].p, old[i].size, old[i].per_input);
        free(old);
    }
    size_t i = fuzz_slot(p);
    while (fuzz_table[i].p != NULL) i = (i + 1) & (fuzz_capacity - 1);
    fuzz_table[i] = (FuzzBlock){p, size, per_input};
    fuzz_count++;
    if (per_input) fuzz_live += size;
}

// Removes p; returns its entry. A pointer the tracker never gave out is a finding.
static FuzzBlock fuzz_remove(void* p) {
    size_t i = fuzz_slot(p);
    while (fuzz_capacity > 0 && fuzz_table[i].p != NULL && fuzz_table[i].p != p) i = (i + 1) & (fuzz_capacity - 1);
    if (fuzz_capacity == 0 || fuzz_table[i].p == NULL) {
        fprintf(stderr, "fuzz: free of %p, which no tracked allocation returned\n", p);
        abort();
    }
    FuzzBlock found = fuzz_table[i];
    fuzz_table[i].p = NULL;
    fuzz_count--;
    if (found.per_input) fuzz_live -= found.size;
    for (size_t j = (i + 1) & (fuzz_capacity - 1); fuzz_table[j].p != NULL; j = (j + 1) & (fuzz_capacity - 1)) {
        FuzzBlock moved = fuzz_table[j];  // re-place the rest of the run (deletion without tombstones)
        fuzz_table[j].p = NULL;
        fuzz_count--;
        if (moved.per_input) fuzz_live -= moved.size;
        fuzz_insert(moved.p, moved.size, moved.per_input);
    }
    return found;
}

static FILE* fuzz_stderr;  // the real stderr: fuzz_run sends the parsers' error lines elsewhere under libFuzzer

static void fuzz_over_limit(size_t asked) {
    fprintf(fuzz_stderr ? fuzz_stderr : stderr, "fuzz: memory blow-up: a %zu-byte input made the code ask for %zu "
            "more bytes while holding %zu (limit %zu); a size is not checked against the file before it is allocated\n",
            fuzz_input_size, asked, fuzz_live, fuzz_limit);
    abort();
}

static void fuzz_check_limit(size_t size) {
    if (fuzz_inside && (size > fuzz_limit || fuzz_live + size > fuzz_limit)) fuzz_over_limit(size);
}

static void* fuzz_aligned_alloc(size_t align, size_t size) {
    fuzz_check_limit(size);
    void* p = aligned_alloc(align, size);
    if (p) fuzz_insert(p, size, fuzz_inside);
    return p;
}

static void* fuzz_malloc(size_t size) {
    fuzz_check_limit(size);
    void* p = malloc(size);
    if (p) fuzz_insert(p, size, fuzz_inside);
    return p;
}

static void fuzz_free(void* p) {
    if (p == NULL) return;
    fuzz_remove(p);
    free(p);
}

static void* fuzz_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void* p = fuzz_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

static void* fuzz_realloc(void* p, size_t size) {
    if (p == NULL) return fuzz_malloc(size);
    FuzzBlock old = fuzz_remove(p);
    if (old.per_input && size > old.size) fuzz_check_limit(size - old.size);
    void* q = realloc(p, size);
    fuzz_insert(q ? q : p, q ? size : old.size, old.per_input);  // a persistent block stays persistent
    return q;
}

static char* fuzz_strndup(const char* s, size_t n) {
    size_t len = strnlen(s, n);
    char* p = fuzz_malloc(len + 1);
    if (p) { memcpy(p, s, len); p[len] = '\0'; }
    return p;
}

static char* fuzz_strdup(const char* s) { return fuzz_strndup(s, SIZE_MAX); }

// mappings (safetensors_open's) made inside fuzz_run, unmapped when it ends
#define FUZZ_MAX_MAPS 64
static struct { void* addr; size_t len; } fuzz_maps[FUZZ_MAX_MAPS];
static int fuzz_num_maps;

static void* fuzz_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t offset) {
    void* p = mmap(addr, len, prot, flags, fd, offset);
    if (p != MAP_FAILED && fuzz_inside) {
        if (fuzz_num_maps == FUZZ_MAX_MAPS) {
            fprintf(stderr, "fuzz: more than %d mappings\n", FUZZ_MAX_MAPS);
            abort();
        }
        fuzz_maps[fuzz_num_maps].addr = p;
        fuzz_maps[fuzz_num_maps++].len = len;
    }
    return p;
}

static int fuzz_munmap(void* addr, size_t len) {
    for (int i = 0; i < fuzz_num_maps; i++) {
        if (fuzz_maps[i].addr == addr) fuzz_maps[i] = fuzz_maps[--fuzz_num_maps];
    }
    return munmap(addr, len);
}

#undef malloc
#undef calloc
#undef realloc
#undef free
#undef aligned_alloc
#undef strdup
#undef strndup
#undef mmap
#undef munmap
#define malloc(size) fuzz_malloc(size)
#define calloc(count, size) fuzz_calloc(count, size)
#define realloc(p, size) fuzz_realloc(p, size)
#define free(p) fuzz_free(p)
#define aligned_alloc(align, size) fuzz_aligned_alloc(align, size)
#define strdup(s) fuzz_strdup(s)
#define strndup(s, n) fuzz_strndup(s, n)
#define mmap(addr, len, prot, flags, fd, offset) fuzz_mmap(addr, len, prot, flags, fd, offset)
#define munmap(addr, len) fuzz_munmap(addr, len)

#include "../../llmc/utils.h"  // defines: fail_jump (and everything after this allocates through the tracker)

// ----------------------------------------------------------------------------
// running one input

static char fuzz_dir[256];  // scratch directory for the files a parser reads

// At exit: the scratch directory and the files the harness wrote in it.
static void fuzz_remove_dir(void) {
    DIR* dir = opendir(fuzz_dir);
    for (struct dirent* e; dir != NULL && (e = readdir(dir)) != NULL;) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir, e->d_name);
        if (e->d_name[0] != '.') unlink(path);
    }
    if (dir != NULL) closedir(dir);
    rmdir(fuzz_dir);
}

// Once per process: cJSON through the tracker, one thread, the scratch directory.
static void fuzz_setup(const char* name) {
    if (fuzz_dir[0] != '\0') return;
    fuzz_stderr = stderr;
    cJSON_Hooks hooks = {fuzz_malloc, fuzz_free};
    cJSON_InitHooks(&hooks);
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    const char* tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (mkdtemp(fuzz_dir) == NULL) { perror("fuzz: mkdtemp"); exit(2); }
    atexit(fuzz_remove_dir);
}

// fuzz_dir/name (a static buffer) with the given contents.
static const char* fuzz_write_file(const char* name, const void* data, size_t size) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
    FILE* f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

// A broken invariant after the parser accepted an input: a finding, reported as a crash.
#define FUZZ_CHECK(condition) \
    do { if (!(condition)) { fprintf(fuzz_stderr, "fuzz: check failed: %s (%s:%d)\n", #condition, __FILE__, __LINE__); \
                             abort(); } } while (0)

// Runs body(ctx) as the handling of one input of input_size bytes; returns 1 if it ran to
// the end, 0 if it was rejected with fail(). Everything it left allocated is released.
static int fuzz_run(void (*body)(void*), void* ctx, size_t input_size) {
    jmp_buf jump;
    fuzz_input_size = input_size;
    fuzz_limit = ((size_t)16 << 20) + 64 * input_size;
    fuzz_live = 0;
    fuzz_inside = 1;
#ifdef FUZZING  // libFuzzer: the error lines of millions of rejected inputs would drown its own
    FILE* saved_stderr = stderr;
    static FILE* devnull = NULL;
    if (devnull == NULL) devnull = fopen("/dev/null", "w");
    stderr = devnull;
#endif
    fail_jump = &jump;
    int rejected = setjmp(jump) != 0;
    if (!rejected) body(ctx);
    fail_jump = NULL;
#ifdef FUZZING
    stderr = saved_stderr;
#endif
    fuzz_inside = 0;
    for (int freed = 1; freed;) {  // what the input left behind (again if removals moved entries back)
        freed = 0;
        for (size_t i = 0; i < fuzz_capacity; i++) {
            while (fuzz_table[i].p != NULL && fuzz_table[i].per_input) fuzz_free(fuzz_table[i].p), freed = 1;
        }
    }
    while (fuzz_num_maps > 0) {
        fuzz_num_maps--;
        munmap(fuzz_maps[fuzz_num_maps].addr, fuzz_maps[fuzz_num_maps].len);
    }
    fuzz_rejected = rejected;
    return !rejected;
}

#endif  // FUZZ_H
