// fuzz_safetensors.c: the safetensors reader (llmc/safetensors.h) on arbitrary bytes: the
// input is the whole file. Accepted files must have every tensor findable by name and
// readable as floats when their dtype is a float. See fuzz.h.
#include "fuzz.h"
#include "../../train.c"

static void open_and_read(void* path) {
    SafeTensors st;
    safetensors_open(&st, path);
    for (int i = 0; i < st.n; i++) {
        SafeTensor* t = &st.tensors[i];
        FUZZ_CHECK(safetensors_find(&st, t->name) == t);
        FUZZ_CHECK(t->data >= st.map && t->data + (t->end - t->begin) <= st.map + st.size);
        if (t->dtype != DTYPE_F32 && t->dtype != DTYPE_BF16 && t->dtype != DTYPE_F16) continue;
        float* values = malloc_check(t->numel * sizeof(float) + 1, "tensor");
        safetensors_read_finite(&st, t, values, 0);
        free(values);
    }
    safetensors_metadata(&st, "format");
    safetensors_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz_setup("fuzz_safetensors");
    const char* path = fuzz_write_file("model.safetensors", data, size);
    fuzz_run(open_and_read, (void*)path, size);
    return 0;
}
