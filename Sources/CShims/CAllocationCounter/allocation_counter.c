// Interposes the allocator entry points to count allocations. Everything
// forwards to glibc's __libc_* functions, so the allocator itself is
// unchanged; the only added cost is one relaxed load (and, while counting,
// one relaxed atomic add) per call.
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include "allocation_counter.h"

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static int counting;
static uint64_t allocations;
static uint64_t frees;

void se_allocations_set_counting(int on) { __atomic_store_n(&counting, on, __ATOMIC_SEQ_CST); }
uint64_t se_allocations_count(void) { return __atomic_load_n(&allocations, __ATOMIC_SEQ_CST); }
uint64_t se_allocations_frees(void) { return __atomic_load_n(&frees, __ATOMIC_SEQ_CST); }

uint64_t se_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return (uint64_t)info.uordblks + (uint64_t)info.hblkhd;
}

static inline void count_allocation(void) {
    if (__atomic_load_n(&counting, __ATOMIC_RELAXED)) __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t size) {
    count_allocation();
    return __libc_malloc(size);
}

void free(void *pointer) {
    if (pointer && __atomic_load_n(&counting, __ATOMIC_RELAXED)) __atomic_fetch_add(&frees, 1, __ATOMIC_RELAXED);
    __libc_free(pointer);
}

void *calloc(size_t count, size_t size) {
    count_allocation();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    // realloc(NULL) allocates; realloc to a new size may move: count both as
    // allocations, as the Swift runtime and malloc counters conventionally do.
    count_allocation();
    return __libc_realloc(pointer, size);
}

void *reallocarray(void *pointer, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    count_allocation();
    return __libc_realloc(pointer, total);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0) return EINVAL;
    count_allocation();
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer) return ENOMEM;
    *out = pointer;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    count_allocation();
    return __libc_memalign(alignment, size);
}

void *valloc(size_t size) {
    count_allocation();
    return __libc_valloc(size);
}

void *pvalloc(size_t size) {
    count_allocation();
    return __libc_pvalloc(size);
}
