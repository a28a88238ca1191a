// The per-step arena: bump allocation in chunks. A step that outgrows the current chunk gets another;
// the next reset merges everything into one chunk of the total size, so steady-state steps allocate
// nothing. Running out of memory here is fatal (as in ggml): there is no sensible partial step.
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define IB_ALIGN 64

typedef struct chunk {
    struct chunk *prev;
    size_t cap, used;
    char *mem;
} chunk;

struct ib_arena {
    chunk *head;
    size_t total_used;   // bytes handed out since the last reset, all chunks
    size_t total_cap;
    size_t peak;
};

static chunk *chunk_new(size_t cap) {
    chunk *c = malloc(sizeof *c);
    char *mem = aligned_alloc(IB_ALIGN, (cap + IB_ALIGN - 1) / IB_ALIGN * IB_ALIGN);
    IB_ASSERT(c && mem, "arena: out of memory allocating %zu bytes", cap);
    c->prev = NULL;
    c->cap = cap;
    c->used = 0;
    c->mem = mem;
    return c;
}

ib_arena *ib_arena_new(size_t initial_bytes) {
    ib_arena *a = calloc(1, sizeof *a);
    IB_ASSERT(a, "arena: out of memory");
    if (initial_bytes < (1u << 20)) initial_bytes = 1u << 20;
    a->head = chunk_new(initial_bytes);
    a->total_cap = initial_bytes;
    return a;
}

static void free_chunks(chunk *c) {
    while (c) {
        chunk *p = c->prev;
        free(c->mem);
        free(c);
        c = p;
    }
}

void ib_arena_free(ib_arena *a) {
    if (!a) return;
    free_chunks(a->head);
    free(a);
}

void *ib_arena_alloc(ib_arena *a, size_t bytes) {
    size_t need = (bytes + IB_ALIGN - 1) / IB_ALIGN * IB_ALIGN;
    if (need == 0) need = IB_ALIGN;
    chunk *c = a->head;
    if (c->used + need > c->cap) {
        size_t cap = c->cap * 2;
        if (cap < need) cap = need;
        chunk *n = chunk_new(cap);
        n->prev = c;
        a->head = n;
        a->total_cap += cap;
        c = n;
    }
    void *p = c->mem + c->used;
    c->used += need;
    a->total_used += need;
    if (a->total_used > a->peak) a->peak = a->total_used;
    return p;
}

void *ib_arena_calloc(ib_arena *a, size_t bytes) {
    void *p = ib_arena_alloc(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void ib_arena_reset(ib_arena *a) {
    if (a->head->prev) {
        // Several chunks: this step needed more than one. Replace them by one big enough for all.
        size_t cap = a->total_cap;
        free_chunks(a->head);
        a->head = chunk_new(cap);
        a->total_cap = cap;
    }
    a->head->used = 0;
    a->total_used = 0;
}

size_t ib_arena_used(const ib_arena *a) { return a->total_used; }
size_t ib_arena_peak(const ib_arena *a) { return a->peak; }
