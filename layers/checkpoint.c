// HDF5 checkpoints: the network's tensors by dotted name, its arch as JSON, and (through a callback)
// the training state. Written as PATH.tmp and renamed, so a crash never leaves half a checkpoint.
#include "layers/layers.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

ib_status ib_ckpt_save(const ib_net *net, const char *path, ib_status (*extra)(ib_h5 *f, void *user), void *user) {
    ib_h5 *f;
    ib_status s = ib_h5_create(&f, path);
    if (s) return s;
    s = ib_h5_set_attr_str(f, "/", "format", IB_CKPT_FORMAT);
    if (!s) s = ib_h5_set_attr_i64(f, "/", "version", IB_CKPT_VERSION);
    if (!s) {
        char *json = ib_arch_to_json(&net->arch);
        s = ib_h5_set_attr_str(f, "/", "arch", json);
        free(json);
    }
    if (!s) s = ib_h5_set_attr_str(f, "/", "ibnas_version", IB_VERSION_STRING);
    if (!s && net->class_names) {   // a JSON array of strings
        json_t *a = json_array();
        for (int c = 0; a && c < net->n_class_names; c++)
            if (json_array_append_new(a, json_string(net->class_names[c]))) json_decref(a), a = NULL;
        char *txt = a ? json_dumps(a, JSON_COMPACT) : NULL;
        s = txt ? ib_h5_set_attr_str(f, "/", "class_names", txt) : ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
        free(txt);
        json_decref(a);
    }
    if (!s) s = ib_params_write(f, &net->ps);
    if (!s && extra) s = extra(f, user);
    if (s) {
        ib_h5_abort(f);
        return s;
    }
    return ib_h5_close(f);
}

ib_status ib_params_write(ib_h5 *f, const ib_params *ps) {
    char name[512];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s/%s", ps->is_buffer[i] ? "buffers" : "params", ps->t[i]->name);
        ib_status s = ib_h5_write(f, name, ps->t[i]);
        if (s) return s;
    }
    return IB_OK;
}

ib_status ib_params_read(ib_h5 *f, ib_params *ps) {
    char name[512];
    for (int i = 0; i < ps->n; i++) {
        snprintf(name, sizeof name, "%s/%s", ps->is_buffer[i] ? "buffers" : "params", ps->t[i]->name);
        ib_status s = ib_h5_check_f32(f, name);
        if (!s) s = ib_h5_read_into(f, name, ps->t[i]);
        if (s) return s;
        const float *v = ps->t[i]->data;
        for (int64_t j = 0, n = ib_numel(ps->t[i]); j < n; j++)
            if (!isfinite(v[j]))
                return ib_fail(IB_ERR_FORMAT, "%s: %s holds %g at element %lld; a network with it computes nothing",
                               ib_h5_path(f), name, v[j], (long long)j);
    }
    return IB_OK;
}

ib_status ib_ckpt_load_into(ib_net *net, ib_h5 *f) { return ib_params_read(f, &net->ps); }

static ib_status check_header(ib_h5 *f) {
    char *fmt = NULL;
    int64_t version = 0;
    const char *path = ib_h5_path(f);
    if (ib_h5_attr_str(f, "/", "format", &fmt) || strcmp(fmt, IB_CKPT_FORMAT)) {
        ib_status s = ib_fail(IB_ERR_FORMAT, "%s: not an ibnas checkpoint (format attribute is %s%s%s, expected \"%s\"; "
                              "PyTorch weights convert with tools/torch2ibnas.py)", path, fmt ? "\"" : "",
                              fmt ? fmt : "missing", fmt ? "\"" : "", IB_CKPT_FORMAT);
        free(fmt);
        return s;
    }
    free(fmt);
    if (ib_h5_attr_i64(f, "/", "version", &version))
        return ib_fail(IB_ERR_FORMAT, "%s: checkpoint has no version attribute", path);
    if (version != IB_CKPT_VERSION)
        return ib_fail(IB_ERR_FORMAT, "%s: checkpoint version %lld, this build reads version %d", path,
                       (long long)version, IB_CKPT_VERSION);
    return IB_OK;
}

// The optional class_names attribute: a JSON array of non-empty strings.
static ib_status read_class_names(ib_net *net, ib_h5 *f) {
    char *txt = NULL;
    if (ib_h5_attr_str(f, "/", "class_names", &txt)) return IB_OK;   // none recorded
    json_error_t e;
    json_t *a = json_loads(txt, 0, &e);
    free(txt);
    int n = json_is_array(a) ? (int)json_array_size(a) : 0;
    const char **names = n > 0 ? calloc((size_t)n, sizeof *names) : NULL;
    ib_status s = IB_OK;
    for (int c = 0; names && c < n; c++)
        if (!(names[c] = json_string_value(json_array_get(a, (size_t)c))) || !names[c][0]) n = -1;
    if (n < 1 || !names)
        s = ib_fail(IB_ERR_FORMAT, "%s: the class_names attribute is not a JSON array of non-empty strings",
                    ib_h5_path(f));
    else
        s = ib_net_set_class_names(net, names, n);
    free(names);
    json_decref(a);
    return s;
}

ib_status ib_ckpt_load(ib_net *net, const char *path) {
    memset(net, 0, sizeof *net);
    ib_h5 *f;
    ib_status s = ib_h5_open(&f, path);
    if (s) return s;
    char *json = NULL;
    ib_arch arch;
    memset(&arch, 0, sizeof arch);
    s = check_header(f);
    if (!s && ib_h5_attr_str(f, "/", "arch", &json)) s = ib_fail(IB_ERR_FORMAT, "%s: no arch attribute", path);
    if (!s) {
        char src[600];
        snprintf(src, sizeof src, "%s (arch attribute)", path);
        s = ib_arch_parse(&arch, json, src);
    }
    free(json);
    if (!s) s = ib_net_build(net, &arch);
    if (!s) s = ib_ckpt_load_into(net, f);
    if (!s) s = read_class_names(net, f);
    ib_arch_free(&arch);
    ib_h5_close(f);
    if (s && net->blocks) ib_net_free(net);
    return s;
}
