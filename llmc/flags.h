// flags.h: Flag (one table row per command-line flag gives parsing, --help, range checks and
// did-you-mean suggestions), FlagTable, flags_parse, flags_usage. Used by ./train, ./generate
// and ./tokenizer, so every program reads --name value, --name=value and --help the same way.
#ifndef LLMC_FLAGS_H
#define LLMC_FLAGS_H

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "utils.h"

enum { FLAG_INT, FLAG_FLOAT, FLAG_STRING, FLAG_BOOL, FLAG_U64 };

typedef struct {
    const char* name;
    const char* alias;  // or NULL
    int type;           // FLAG_INT (int), FLAG_FLOAT (float), FLAG_STRING (const char*),
                        // FLAG_BOOL (int: --flag, --flag=true|false), FLAG_U64 (uint64_t). A number whose
                        // default lies outside [lo, hi] (-1, NAN) means "not given": --help shows none.
    size_t offset;      // of the field in the program's argument struct
    double lo, hi;      // range of numbers
    const char* help;
} Flag;

typedef struct {
    const char* program;   // "./train", named in errors
    const char* usage;     // the first line of --help
    const Flag* flags;
    int count;
    const void* defaults;  // an argument struct holding every default, printed by --help
    size_t size;           // of that struct
} FlagTable;

static void flags_usage(const FlagTable* t) {
    printf("%s\n", t->usage);
    for (int i = 0; i < t->count; i++) {
        const Flag* f = &t->flags[i];
        const char* field = (const char*)t->defaults + f->offset;
        char value[64];
        double number = f->type == FLAG_INT ? *(const int*)field : f->type == FLAG_FLOAT ? *(const float*)field : 0;
        if ((f->type == FLAG_INT || f->type == FLAG_FLOAT) && !(number >= f->lo && number <= f->hi)) {
            snprintf(value, sizeof(value), "none");  // a default outside the range: not given
        } else if (f->type == FLAG_INT) snprintf(value, sizeof(value), "%d", *(const int*)field);
        else if (f->type == FLAG_U64) snprintf(value, sizeof(value), "%llu",
                                               (unsigned long long)*(const uint64_t*)field);
        else if (f->type == FLAG_FLOAT) snprintf(value, sizeof(value), "%g", *(const float*)field);
        else if (f->type == FLAG_BOOL) snprintf(value, sizeof(value), "%s", *(const int*)field ? "on" : "off");
        else {
            const char* s = *(const char* const*)field;
            snprintf(value, sizeof(value), "%s", s && *s ? s : "none");
        }
        char names[80];
        snprintf(names, sizeof(names), "%s%s%s", f->name, f->alias ? ", " : "", f->alias ? f->alias : "");
        printf("  %-44s %s (default %s)\n", names, f->help, value);
    }
}

static int edit_distance(const char* a, const char* b) {
    int la = (int)strlen(a), lb = (int)strlen(b), row[64];
    if (lb >= 63) return 99;
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int cur = row[j];
            int best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb];
}

// The flags the typed name begins ("--temp": --template or --temperature), else the nearest.
static void flags_suggest(const FlagTable* t, const char* name, char* out, size_t size) {
    size_t n = strlen(name), used = 0;
    out[0] = '\0';
    for (int k = 0; k < t->count; k++) {
        if (n > 2 && strncmp(t->flags[k].name, name, n) == 0 && used + 40 < size) {
            used += snprintf(out + used, size - used, "%s%s", used ? " or " : "", t->flags[k].name);
        }
    }
    if (used > 0) return;
    const char* best = t->flags[0].name;
    for (int k = 1; k < t->count; k++) {
        if (edit_distance(name, t->flags[k].name) < edit_distance(name, best)) best = t->flags[k].name;
    }
    snprintf(out, size, "%s", best);
}

static const Flag* flags_find(const FlagTable* t, const char* name) {  // or fail with a suggestion
    for (int k = 0; k < t->count; k++) {
        const Flag* f = &t->flags[k];
        if (strcmp(name, f->name) == 0 || (f->alias && strcmp(name, f->alias) == 0)) return f;
    }
    char suggestion[200];
    flags_suggest(t, name, suggestion, sizeof(suggestion));
    fail("unknown flag %s; did you mean %s? (%s --help lists every flag)", name, suggestion, t->program);
    return NULL;
}

// Fills args (the program's struct) with the defaults, then argv[first..argc) over them.
// Arguments that are not flags (and everything after "--") go to positional, returning
// their count; with positional NULL they are an error. --help prints the table and exits
// 0; anything else wrong is one line and exit 1.
static int flags_parse(const FlagTable* t, void* args, int argc, char** argv, int first, char** positional) {
    memcpy(args, t->defaults, t->size);
    int n_positional = 0;
    for (int i = first; i < argc; i++) {
        const char* arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) { flags_usage(t); exit(0); }
        int is_flag = strncmp(arg, "--", 2) == 0 && strcmp(arg, "--") != 0;
        if (!is_flag && positional == NULL) {
            fail("unexpected argument '%s' (flags start with --; %s --help lists them)", arg, t->program);
        }
        if (!is_flag) {
            if (strcmp(arg, "--") == 0) while (i + 1 < argc) positional[n_positional++] = argv[++i];
            else positional[n_positional++] = argv[i];
            continue;
        }
        const char* eq = strchr(arg, '=');  // --flag=value
        char name[128];
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
        const Flag* f = flags_find(t, name);
        char* field = (char*)args + f->offset;
        if (f->type == FLAG_BOOL && eq == NULL) { *(int*)field = 1; continue; }
        const char* value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (value == NULL) fail("%s needs a value", name);
        if (f->type == FLAG_STRING) { *(const char**)field = value; continue; }
        if (f->type == FLAG_BOOL) {
            if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) { *(int*)field = value[0] == 't'; continue; }
            fail("%s expects true or false, got '%s'", name, value);
        }
        char* end;
        errno = 0;
        double v = strtod(value, &end);
        int integer = f->type == FLAG_INT || f->type == FLAG_U64;
        if (errno != 0 || end == value || *end != '\0' || !(v >= f->lo && v <= f->hi) || (integer && v != floor(v))) {
            fail("%s expects %s in [%g, %g], got '%s'", name, integer ? "an integer" : "a number", f->lo, f->hi, value);
        }
        if (f->type == FLAG_INT) *(int*)field = (int)v;
        else if (f->type == FLAG_U64) *(uint64_t*)field = (uint64_t)v;
        else *(float*)field = (float)v;
    }
    return n_positional;
}

#endif  // LLMC_FLAGS_H
