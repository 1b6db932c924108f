// count_allocations.h: defines allocations, the number of allocations made by the code
// included after this file (train.c's all go through malloc_check's aligned_alloc), so a
// test can prove that a training step makes none. Include it before train.c or train_gpu.c.
#ifndef COUNT_ALLOCATIONS_H
#define COUNT_ALLOCATIONS_H

#include <stdlib.h>

static long allocations = 0;
static void* counted_aligned_alloc(size_t alignment, size_t size) {
    allocations++;
    return aligned_alloc(alignment, size);
}
#define aligned_alloc counted_aligned_alloc

#endif
