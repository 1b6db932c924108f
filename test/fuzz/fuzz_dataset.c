// fuzz_dataset.c: the dataset readers (llmc/dataloader.h: CSV, JSON, JSONL, text) from
// arbitrary bytes. The first byte picks the format: 'c' CSV, 'j' JSON, 'l' JSONL, 't'
// text (any other byte: its value mod 4, in that order); the rest is the file. An
// accepted dataset must hold at least one conversation of known roles. See fuzz.h.
#include "fuzz.h"
#include "../../train.c"

static void load_and_check(void* path) {
    Dataset d;
    dataset_load(&d, path);
    FUZZ_CHECK(d.count >= 1);
    const char* roles[] = {"system", "user", "assistant", "input", "text"};
    for (int i = 0; i < d.count; i++) {
        FUZZ_CHECK(d.items[i].count >= 1);
        for (int k = 0; k < d.items[i].count; k++) {
            const Message* m = &d.items[i].messages[k];
            int known = 0;
            for (int r = 0; r < 5; r++) known |= strcmp(m->role, roles[r]) == 0;
            FUZZ_CHECK(known && m->content != NULL);
        }
    }
    dataset_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_dataset");
    if (size == 0) return 0;
    const char* names[] = {"data.csv", "data.json", "data.jsonl", "data.txt"};
    int format = data[0] == 'c' ? 0 : data[0] == 'j' ? 1 : data[0] == 'l' ? 2 : data[0] == 't' ? 3 : data[0] % 4;
    const char* path = fuzz_write_file(names[format], data + 1, size - 1);
    fuzz_run(load_and_check, (void*)path, size);
    return 0;
}
