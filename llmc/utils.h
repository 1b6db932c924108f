// utils.h: fail, malloc_check, realloc_check, calloc_floats, strdup_check, path_join, is_directory,
// read_file (read_file_at_most), mix32, wall_seconds, proc_bytes (available_memory), the atomic
// FileWriter (write_text_file, copy_file), make_directory, bf16_to_float, float_to_bf16.
// static inline: tokenizer.c and the program that links it each keep their own copy.
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// errors and checked wrappers: one line naming the file and the problem, exit 1

// The one testing hook: a harness that feeds many inputs to one process (test/fuzz/)
// points fail_jump at its jmp_buf, and fail() then longjmps there after printing its
// line instead of exiting. Nothing else sets it; the programs always exit.
static jmp_buf* fail_jump = NULL;
// Set by train_mpi's ranks (llmc/distributed.h): the error names its rank, and fail_exit stops every rank.
static int fail_rank = -1;
static void (*fail_exit)(void) = NULL;

// The line is written with one fputs: under mpirun, separate writes of one rank's line can be
// forwarded apart, with another rank's output between "rank 1: " and "error: ".
static inline void fail(const char* fmt, ...) {
    char line[8192];
    int n = fail_rank >= 0 ? snprintf(line, sizeof line, "rank %d: error: ", fail_rank)
                           : snprintf(line, sizeof line, "error: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    fputs(line, stderr);
    if (fail_jump != NULL) longjmp(*fail_jump, 1);
    if (fail_exit != NULL) fail_exit();
    exit(EXIT_FAILURE);
}

// Buffers of 32 MiB and more (weights, activations) are aligned to 2 MiB and asked to
// be backed by huge pages: on this project's VMs, first touching 2.5 GB in 4 KiB pages
// took 5.3 s and in 2 MiB pages 0.9 s, which is most of the time to load a 1B model.
#define HUGE_PAGE ((size_t)2 << 20)
static inline void* malloc_check(size_t size, const char* what) {
    int big = size >= 16 * HUGE_PAGE;
    size_t align = big ? HUGE_PAGE : 64, rounded = (size + align - 1) / align * align;
    void* p = aligned_alloc(align, rounded);
    if (size > 0 && p == NULL) {
        fail("out of memory allocating %.2f GiB for %s; lower --batch_size or --seq_len, "
             "or use a smaller model", size / 1073741824.0, what);
    }
#ifdef MADV_HUGEPAGE
    if (big) madvise(p, rounded, MADV_HUGEPAGE);  // a hint; without transparent huge pages it changes nothing
#endif
    return p;
}

static inline float* calloc_floats(size_t n, const char* what) {
    float* p = malloc_check(n * sizeof(float), what);
    memset(p, 0, n * sizeof(float));
    return p;
}

static inline char* path_join(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = malloc_check(n, "a path");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline void* realloc_check(void* p, size_t size, const char* what) {
    p = realloc(p, size > 0 ? size : 1);
    if (p == NULL) fail("out of memory growing %s to %zu bytes", what, size);
    return p;
}

static inline char* strdup_check(const char* s) {
    size_t n = strlen(s) + 1;
    return memcpy(malloc_check(n, "a string"), s, n);
}

static inline int is_directory(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// The whole file, NUL-terminated (its length in *len_out when not NULL), of at most max
// bytes. Reads to the end rather than trusting the size, so pipes and /proc files work
// too; the limit stops a config.json that is /dev/zero. hint ends the "cannot open" error.
static inline char* read_file_at_most(const char* path, size_t* len_out, const char* hint, size_t max) {
    FILE* f = fopen(path, "rb");
    if (f == NULL) fail("cannot open %s: %s%s", path, strerror(errno), hint);
    size_t cap = 1 << 16, len = 0;
    char* data = malloc_check(cap, path);
    for (;;) {
        if (len + 1 >= cap) data = realloc_check(data, cap *= 2, path);
        size_t got = fread(data + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
        if (len > max) {
            fclose(f);
            fail("%s: more than %zu MiB; not the file it should be", path, max >> 20);
        }
    }
    if (ferror(f)) fail("cannot read %s: %s", path, strerror(errno));
    fclose(f);
    data[len] = '\0';
    if (len_out) *len_out = len;
    return data;
}

static inline char* read_file(const char* path, size_t* len_out, const char* hint) {
    return read_file_at_most(path, len_out, hint, SIZE_MAX);
}

// A 32-bit integer hash with good avalanche: random numbers (dropout masks, shuffles,
// initialisation) as pure functions of (seed, position), so nothing needs saving to resume.
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static inline double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// The "name:  123 kB" line of a Linux /proc file (/proc/meminfo, /proc/self/status) in bytes,
// or 0 when unknown.
static inline double proc_bytes(const char* path, const char* name) {
    FILE* f = fopen(path, "r");
    if (f == NULL) return 0.0;
    char line[256];
    double kb = 0.0;
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%lf", &kb) == 1) break;
    }
    fclose(f);
    return kb * 1024.0;
}
static inline double available_memory(void) { return proc_bytes("/proc/meminfo", "MemAvailable"); }


typedef struct {
    FILE* f;
    char* path;
    char* tmp_path;
} FileWriter;

static inline void file_writer_open(FileWriter* w, const char* path) {
    w->path = strdup(path);
    size_t n = strlen(path) + 16;
    w->tmp_path = malloc_check(n, "a path");
    snprintf(w->tmp_path, n, "%s.tmp%d", path, (int)getpid());
    w->f = fopen(w->tmp_path, "wb");
    if (w->f == NULL) fail("cannot write %s: %s; check that the output directory exists and is writable",
                           w->tmp_path, strerror(errno));
}

static inline void file_writer_write(FileWriter* w, const void* data, size_t size) {
    if (size > 0 && fwrite(data, 1, size, w->f) != size) {
        int err = errno;
        fclose(w->f);
        unlink(w->tmp_path);
        fail("cannot write %s: %s", w->path, strerror(err));
    }
}

// flush, fsync, rename over the real name
static inline void file_writer_close(FileWriter* w) {
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        int err = errno;
        fclose(w->f);
        unlink(w->tmp_path);
        fail("cannot write %s: %s", w->path, strerror(err));
    }
    if (fclose(w->f) != 0 || rename(w->tmp_path, w->path) != 0) {
        int err = errno;
        unlink(w->tmp_path);
        fail("cannot write %s: %s", w->path, strerror(err));
    }
    free(w->path);
    free(w->tmp_path);
}

static inline void write_text_file(const char* path, const char* text) {
    FileWriter w;
    file_writer_open(&w, path);
    file_writer_write(&w, text, strlen(text));
    file_writer_close(&w);
}

static inline void copy_file(const char* from, const char* to) {
    char* text = read_file(from, NULL, "");
    write_text_file(to, text);
    free(text);
}

static inline void make_directory(const char* dir) {
    char* path = strdup(dir);
    for (char* p = path + 1; ; p++) {  // mkdir -p
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) fail("cannot create directory %s: %s",
                                                                path, strerror(errno));
            *p = saved;
            if (saved == '\0') break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) fail("%s exists and is not a directory", dir);
    free(path);
}

// bf16 is the top half of an fp32 number: widening is exact, narrowing rounds to nearest even.
static inline float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // NaN stays NaN
    bits += 0x7fffu + ((bits >> 16) & 1);  // round to nearest even
    return (uint16_t)(bits >> 16);
}

#endif  // LLMC_UTILS_H
