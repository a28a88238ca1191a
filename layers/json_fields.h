// JSON fields with messages a person can act on, for the files layers/ and search/ read (arch, space):
// "FILE: blocks[3].kernel: 4 is out of range [1, 9]". `where` carries the file and the path being read.
#ifndef IB_JSON_FIELDS_H
#define IB_JSON_FIELDS_H

#include "layers/layers.h"

#include <jansson.h>

typedef struct ib_json_where {
    const char *source;   // the file (or "arch") named in messages
    char path[128];       // the object being read ("blocks[3]"), "" at the top
} ib_json_where;

// IB_ERR_FORMAT "source: path.field: what".
ib_status ib_json_bad(const ib_json_where *w, const char *field, const char *what);
// Every key of obj is one of `allowed` (NULL-terminated), else "unknown field".
ib_status ib_json_only_keys(const ib_json_where *w, json_t *obj, const char *const *allowed);
// An integer in [lo, hi] (missing: an error when required, else *out is left alone).
ib_status ib_json_get_int(const ib_json_where *w, json_t *obj, const char *key, int *out, int required, int lo, int hi);
// A number in [lo, hi] (missing: *out is left alone).
ib_status ib_json_get_float(const ib_json_where *w, json_t *obj, const char *key, float *out, float lo, float hi);
// "relu", "relu6" or "hswish" (missing: *out is left alone).
ib_status ib_json_get_act(const ib_json_where *w, json_t *obj, const char *key, ib_act *out);

// The "stem" object ({"out", "kernel", "stride"}; kernel odd) and the "head" object ({"out", "dropout"}) that
// arch and space files share; a missing object leaves the outputs alone. w->path is left at the object's name.
ib_status ib_json_get_stem(ib_json_where *w, json_t *root, int *out, int *kernel, int *stride);
ib_status ib_json_get_head(ib_json_where *w, json_t *root, int *out, float *dropout);

#define IB_JSON_TRY(x) do { ib_status s_ = (x); if (s_) return s_; } while (0)

#endif
