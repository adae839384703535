#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H
#include <stdint.h>
/// Number of heap allocations (malloc, calloc, realloc, memalign family) since process start.
/// Counted by interposing the allocator entry points in the benchmark executable (glibc only).
uint64_t CMallocCounter_count(void);
#endif
