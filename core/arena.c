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

// A block handed back with ib_arena_give_back, free for ib_arena_calloc_reuse until the next reset.
typedef struct {
    char *p;
    size_t n;
} free_block;

struct ib_arena {
    chunk *head;
    size_t total_used;   // bytes handed out since the last reset, all chunks
    size_t total_cap;
    size_t peak;
    free_block *free;    // sorted by address, neighbours merged
    int n_free, cap_free;
    // An open scratch scope (ib_arena_scope_begin): where it began and the kept (calloc_reuse) blocks.
    int scope_on;
    chunk *scope_chunk;
    size_t scope_mark;
    free_block *keep;
    int n_keep, cap_keep;
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
    free(a->free);
    free(a->keep);
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

// ---------------------------------------------------------------------------------------------
// Reuse within a step: the backward pass hands an activation's grad back once nothing will read it,
// and later grads take its place. Best fit among the free blocks (the rest of a block stays free);
// failing that, a free block at the top of the current chunk grows into the unused space above it,
// which suits the backward pass, whose grads get larger as it walks back to the input.

static int owned(const ib_arena *a, const char *p, size_t n) {
    for (const chunk *c = a->head; c; c = c->prev)
        if (p >= c->mem && p + n <= c->mem + c->used) return 1;
    return 0;
}

void ib_arena_give_back(ib_arena *a, void *ptr, size_t bytes) {
    char *p = ptr;
    size_t n = (bytes + IB_ALIGN - 1) / IB_ALIGN * IB_ALIGN;
    if (!p || n == 0 || !owned(a, p, n)) return;
    int i = 0;
    while (i < a->n_free && a->free[i].p < p) i++;
    IB_ASSERT(i == a->n_free || p + n <= a->free[i].p, "arena: block given back twice");
    IB_ASSERT(i == 0 || a->free[i - 1].p + a->free[i - 1].n <= p, "arena: block given back twice");
    int merge_prev = i > 0 && a->free[i - 1].p + a->free[i - 1].n == p;
    int merge_next = i < a->n_free && p + n == a->free[i].p;
    if (merge_prev && merge_next) {
        a->free[i - 1].n += n + a->free[i].n;
        memmove(&a->free[i], &a->free[i + 1], sizeof *a->free * (size_t)(a->n_free - i - 1));
        a->n_free--;
    } else if (merge_prev) {
        a->free[i - 1].n += n;
    } else if (merge_next) {
        a->free[i].p = p;
        a->free[i].n += n;
    } else {
        if (a->n_free == a->cap_free) {
            int cap = a->cap_free ? 2 * a->cap_free : 64;
            free_block *f = realloc(a->free, sizeof *f * (size_t)cap);
            IB_ASSERT(f, "arena: out of memory");
            a->free = f, a->cap_free = cap;
        }
        memmove(&a->free[i + 1], &a->free[i], sizeof *a->free * (size_t)(a->n_free - i));
        a->free[i] = (free_block){p, n};
        a->n_free++;
    }
}

static void take(ib_arena *a, int i, size_t need) {
    a->free[i].p += need;
    a->free[i].n -= need;
    if (a->free[i].n == 0) {
        memmove(&a->free[i], &a->free[i + 1], sizeof *a->free * (size_t)(a->n_free - i - 1));
        a->n_free--;
    }
}

void *ib_arena_alloc_reuse(ib_arena *a, size_t bytes) {
    size_t need = (bytes + IB_ALIGN - 1) / IB_ALIGN * IB_ALIGN;
    if (need == 0) need = IB_ALIGN;
    int best = -1;
    for (int i = 0; i < a->n_free; i++)
        if (a->free[i].n >= need && (best < 0 || a->free[i].n < a->free[best].n)) best = i;
    char *p = NULL;
    if (best >= 0) {
        p = a->free[best].p;
        take(a, best, need);
    } else if (a->n_free > 0) {
        chunk *c = a->head;
        free_block *top = &a->free[a->n_free - 1];
        size_t extra = need - top->n;
        if (top->p + top->n == c->mem + c->used && c->used + extra <= c->cap) {
            c->used += extra;
            a->total_used += extra;
            if (a->total_used > a->peak) a->peak = a->total_used;
            p = top->p;
            a->n_free--;
        }
    }
    if (!p) p = ib_arena_alloc(a, need);
    chunk *h = a->head;
    if (a->scope_on && h == a->scope_chunk && p >= h->mem && p < h->mem + h->cap) {
        // Keep what reaches above the scope's start (blocks from the head chunk only: other chunks'
        // addresses do not compare with it).
        char *mark = h->mem + a->scope_mark, *lo = p > mark ? p : mark;
        if (p + need > mark) {
            if (a->n_keep == a->cap_keep) {
                int cap = a->cap_keep ? 2 * a->cap_keep : 16;
                free_block *k = realloc(a->keep, sizeof *k * (size_t)cap);
                IB_ASSERT(k, "arena: out of memory");
                a->keep = k, a->cap_keep = cap;
            }
            a->keep[a->n_keep++] = (free_block){lo, (size_t)(p + need - lo)};
        }
    }
    return p;
}

void *ib_arena_calloc_reuse(ib_arena *a, size_t bytes) {
    void *p = ib_arena_alloc_reuse(a, bytes);
    memset(p, 0, bytes);
    return p;
}

void ib_arena_scope_begin(ib_arena *a) {
    a->scope_on = 1;
    a->scope_chunk = a->head;
    a->scope_mark = a->head->used;
    a->n_keep = 0;
}

int ib_arena_scope_open(const ib_arena *a) { return a->scope_on; }

void ib_arena_scope_end(ib_arena *a) {
    if (!a->scope_on) return;
    a->scope_on = 0;
    chunk *c = a->head;
    if (c != a->scope_chunk) return;   // the step outgrew the chunk meanwhile: keep everything this time
    char *pos = c->mem + a->scope_mark, *top = c->mem + c->used;
    for (int i = 0; i < a->n_keep; i++) {   // bump order: ascending addresses
        if (a->keep[i].p > pos) ib_arena_give_back(a, pos, (size_t)(a->keep[i].p - pos));
        if (a->keep[i].p + a->keep[i].n > pos) pos = a->keep[i].p + a->keep[i].n;
    }
    if (top > pos) {   // scratch on top: pop it
        c->used -= (size_t)(top - pos);
        a->total_used -= (size_t)(top - pos);
    }
}

void ib_arena_reset(ib_arena *a) {
    a->n_free = 0;
    a->scope_on = 0;
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
