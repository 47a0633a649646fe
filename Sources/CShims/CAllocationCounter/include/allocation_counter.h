#ifndef SWIFTEVENT_ALLOCATION_COUNTER_H
#define SWIFTEVENT_ALLOCATION_COUNTER_H

#include <stdint.h>

/// Counting of heap allocations for event-bench's `allocations` subcommand.
/// Linking this target into an executable interposes malloc, calloc, realloc,
/// reallocarray, posix_memalign, aligned_alloc, memalign, valloc and pvalloc
/// for the whole process (glibc's own and every library's calls): each one
/// forwards to glibc's __libc_* allocator and, while counting is on, adds one
/// to a process-wide counter. Frees are counted separately.

/// Turns counting on or off (off at start).
void se_allocations_set_counting(int on);

/// Allocations (and frees) counted since the process started, across threads.
uint64_t se_allocations_count(void);
uint64_t se_allocations_frees(void);

/// Heap bytes in use (mallinfo2: in-use chunks plus mmapped blocks).
uint64_t se_heap_in_use(void);

#endif
