// JSON field readers shared by the arch and space parsers (layers/json_fields.h).
#include "layers/json_fields.h"

#include <stdio.h>
#include <string.h>

ib_status ib_json_bad(const ib_json_where *w, const char *field, const char *what) {
    return ib_fail(IB_ERR_FORMAT, "%s: %s%s%s: %s", w->source, w->path, w->path[0] && field[0] ? "." : "", field, what);
}

ib_status ib_json_only_keys(const ib_json_where *w, json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *k = allowed; *k && !ok; k++) ok = !strcmp(*k, key);
        if (!ok) return ib_json_bad(w, key, "unknown field");
    }
    return IB_OK;
}

ib_status ib_json_get_int(const ib_json_where *w, json_t *obj, const char *key, int *out, int required, int lo, int hi) {
    json_t *v = json_object_get(obj, key);
    if (!v) return required ? ib_json_bad(w, key, "missing") : IB_OK;
    if (!json_is_integer(v)) return ib_json_bad(w, key, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "%lld is out of range [%d, %d]", (long long)x, lo, hi);
        return ib_json_bad(w, key, msg);
    }
    *out = (int)x;
    return IB_OK;
}

ib_status ib_json_get_float(const ib_json_where *w, json_t *obj, const char *key, float *out, float lo, float hi) {
    json_t *v = json_object_get(obj, key);
    if (!v) return IB_OK;
    if (!json_is_number(v)) return ib_json_bad(w, key, "must be a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%g is out of range [%g, %g]", x, lo, hi);
        return ib_json_bad(w, key, msg);
    }
    *out = (float)x;
    return IB_OK;
}

ib_status ib_json_get_act(const ib_json_where *w, json_t *obj, const char *key, ib_act *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return IB_OK;
    if (!json_is_string(v) || !ib_act_parse(json_string_value(v), out))
        return ib_json_bad(w, key, "must be one of \"relu\", \"relu6\", \"hswish\"");
    return IB_OK;
}

ib_status ib_json_get_stem(ib_json_where *w, json_t *root, int *out, int *kernel, int *stride) {
    static const char *const keys[] = {"out", "kernel", "stride", NULL};
    json_t *stem = json_object_get(root, "stem");
    if (!stem) return IB_OK;
    snprintf(w->path, sizeof w->path, "stem");
    if (!json_is_object(stem)) return ib_json_bad(w, "", "must be an object");
    IB_JSON_TRY(ib_json_only_keys(w, stem, keys));
    IB_JSON_TRY(ib_json_get_int(w, stem, "out", out, 1, 1, 1 << 16));
    IB_JSON_TRY(ib_json_get_int(w, stem, "kernel", kernel, 0, 1, 9));
    IB_JSON_TRY(ib_json_get_int(w, stem, "stride", stride, 0, 1, 2));
    if (*kernel % 2 == 0) return ib_json_bad(w, "kernel", "must be odd");
    return IB_OK;
}

ib_status ib_json_get_head(ib_json_where *w, json_t *root, int *out, float *dropout) {
    static const char *const keys[] = {"out", "dropout", NULL};
    json_t *head = json_object_get(root, "head");
    if (!head) return IB_OK;
    snprintf(w->path, sizeof w->path, "head");
    if (!json_is_object(head)) return ib_json_bad(w, "", "must be an object");
    IB_JSON_TRY(ib_json_only_keys(w, head, keys));
    IB_JSON_TRY(ib_json_get_int(w, head, "out", out, 0, 0, 1 << 16));
    return ib_json_get_float(w, head, "dropout", dropout, 0, 0.99f);
}
