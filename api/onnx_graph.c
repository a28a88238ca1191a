// api: ONNX graph building and writing over protobuf-c (api/onnx_graph.h). Every string, array and
// message the graph points at is allocated here and listed in one pool, freed with the graph.
#include "api/onnx_graph.h"

#include "onnx.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// A growable array of pointers (nodes, initializers, value infos, metadata, the pool itself).
typedef struct {
    void **p;
    size_t n, cap;
} ptr_list;

struct og_graph {
    int failed;
    char *name, *doc;
    ptr_list pool;   // everything malloc'd for the messages
    ptr_list nodes, inits, inputs, outputs, meta;
};

static int list_push(ptr_list *l, void *v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void **p = realloc(l->p, cap * sizeof *p);
        if (!p) return 0;
        l->p = p, l->cap = cap;
    }
    l->p[l->n++] = v;
    return 1;
}

// calloc'd and pooled; NULL (and the graph marked failed) when out of memory.
static void *og_alloc(og_graph *g, size_t n) {
    if (g->failed) return NULL;
    void *p = calloc(1, n ? n : 1);
    if (!p || !list_push(&g->pool, p)) {
        free(p);
        g->failed = 1;
        return NULL;
    }
    return p;
}

static char *og_strdup(og_graph *g, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = og_alloc(g, n);
    if (d) memcpy(d, s, n);
    return d;
}

static void og_push(og_graph *g, ptr_list *l, void *v) {
    if (g->failed) return;
    if (!v || !list_push(l, v)) g->failed = 1;
}

og_graph *og_new(const char *name) {
    og_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->name = og_strdup(g, name);
    if (g->failed) {
        og_free(g);
        return NULL;
    }
    return g;
}

void og_free(og_graph *g) {
    if (!g) return;
    for (size_t i = 0; i < g->pool.n; i++) free(g->pool.p[i]);
    free(g->pool.p), free(g->nodes.p), free(g->inits.p), free(g->inputs.p), free(g->outputs.p), free(g->meta.p);
    free(g);
}

static int little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

const char *og_initializer(og_graph *g, const char *name, int ndim, const int64_t *dims, const float *data) {
    Onnx__TensorProto *t = og_alloc(g, sizeof *t);
    if (!t) return "";
    onnx__tensor_proto__init(t);
    t->name = og_strdup(g, name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = (size_t)ndim;
    t->dims = og_alloc(g, sizeof(int64_t) * (size_t)ndim);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    uint8_t *raw = og_alloc(g, sizeof(float) * (size_t)numel);
    if (g->failed) return "";
    if (ndim) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)ndim);
    // ONNX's raw_data is little-endian IEEE 754.
    memcpy(raw, data, sizeof(float) * (size_t)numel);
    if (!little_endian())
        for (int64_t i = 0; i < numel; i++) {
            uint8_t *b = raw + 4 * i, x0 = b[0], x1 = b[1];
            b[0] = b[3], b[1] = b[2], b[2] = x1, b[3] = x0;
        }
    t->has_raw_data = 1;
    t->raw_data.len = sizeof(float) * (size_t)numel;
    t->raw_data.data = raw;
    og_push(g, &g->inits, t);
    return g->failed ? "" : t->name;
}

const char *og_scalar(og_graph *g, const char *name, float v) {
    for (size_t i = 0; i < g->inits.n; i++) {
        const Onnx__TensorProto *t = g->inits.p[i];
        if (!strcmp(t->name, name)) return t->name;
    }
    return og_initializer(g, name, 0, NULL, &v);
}

og_node *og_add_node(og_graph *g, const char *op, int n, const char *const *inputs, const char *out) {
    Onnx__NodeProto *node = og_alloc(g, sizeof *node);
    if (!node) return NULL;
    onnx__node_proto__init(node);
    node->op_type = og_strdup(g, op);
    node->name = og_strdup(g, out);
    node->n_input = (size_t)n;
    node->input = og_alloc(g, sizeof(char *) * (size_t)n);
    node->n_output = 1;
    node->output = og_alloc(g, sizeof(char *));
    if (g->failed) return NULL;
    for (int i = 0; i < n; i++) node->input[i] = og_strdup(g, inputs[i] ? inputs[i] : "");
    node->output[0] = og_strdup(g, out);
    og_push(g, &g->nodes, node);
    return g->failed ? NULL : node;
}

static Onnx__AttributeProto *add_attr(og_graph *g, og_node *n, const char *name, Onnx__AttributeProto__AttributeType type) {
    if (!n || g->failed) return NULL;
    Onnx__AttributeProto *a = og_alloc(g, sizeof *a);
    Onnx__AttributeProto **list = og_alloc(g, sizeof(*list) * (n->n_attribute + 1));
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    a->name = og_strdup(g, name);
    a->has_type = 1;
    a->type = type;
    // The attribute arrays are pooled, so the old one is simply left to the pool.
    if (n->n_attribute) memcpy(list, n->attribute, sizeof(*list) * n->n_attribute);
    list[n->n_attribute++] = a;
    n->attribute = list;
    return g->failed ? NULL : a;
}

void og_attr_int(og_graph *g, og_node *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = add_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
}

void og_attr_float(og_graph *g, og_node *n, const char *name, float v) {
    Onnx__AttributeProto *a = add_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
}

void og_attr_str(og_graph *g, og_node *n, const char *name, const char *v) {
    Onnx__AttributeProto *a = add_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    char *d = a ? og_strdup(g, v) : NULL;
    if (d) a->has_s = 1, a->s.len = strlen(d), a->s.data = (uint8_t *)d;
}

void og_attr_ints(og_graph *g, og_node *n, const char *name, int count, const int64_t *v) {
    Onnx__AttributeProto *a = add_attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    if (!a) return;
    a->ints = og_alloc(g, sizeof(int64_t) * (size_t)count);
    if (!a->ints) return;
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)count);
    a->n_ints = (size_t)count;
}

static Onnx__ValueInfoProto *value_info(og_graph *g, const char *name, int ndim, const int64_t *dims, const char *dyn) {
    Onnx__ValueInfoProto *vi = og_alloc(g, sizeof *vi);
    Onnx__TypeProto *type = og_alloc(g, sizeof *type);
    Onnx__TypeProto__Tensor *tt = og_alloc(g, sizeof *tt);
    Onnx__TensorShapeProto *shape = og_alloc(g, sizeof *shape);
    Onnx__TensorShapeProto__Dimension **dl = og_alloc(g, sizeof(*dl) * (size_t)ndim);
    if (g->failed) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(type);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(shape);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = og_alloc(g, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = og_strdup(g, dyn ? dyn : "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dl[i] = d;
    }
    shape->n_dim = (size_t)ndim;
    shape->dim = dl;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    vi->name = og_strdup(g, name);
    vi->type = type;
    return g->failed ? NULL : vi;
}

void og_input(og_graph *g, const char *name, int ndim, const int64_t *dims, const char *dyn) {
    og_push(g, &g->inputs, value_info(g, name, ndim, dims, dyn));
}

void og_output(og_graph *g, const char *name, int ndim, const int64_t *dims, const char *dyn) {
    og_push(g, &g->outputs, value_info(g, name, ndim, dims, dyn));
}

void og_meta(og_graph *g, const char *key, const char *value) {
    Onnx__StringStringEntryProto *e = og_alloc(g, sizeof *e);
    if (!e) return;
    onnx__string_string_entry_proto__init(e);
    e->key = og_strdup(g, key);
    e->value = og_strdup(g, value);
    og_push(g, &g->meta, e);
}

void og_set_doc(og_graph *g, const char *doc) { g->doc = og_strdup(g, doc); }

int og_node_count(const og_graph *g) { return (int)g->nodes.n; }
int og_initializer_count(const og_graph *g) { return (int)g->inits.n; }

// The IR version each operator set came out with (onnx/helper.py's VERSION_TABLE).
static int64_t ir_version_for(int opset) {
    static const int ir[] = {4, 5, 6, 7, 7, 7, 8, 8, 8, 8, 9, 9, 10};   // opsets 9 .. 21
    if (opset < 9) return 3;
    return opset - 9 < (int)(sizeof ir / sizeof ir[0]) ? ir[opset - 9] : 10;
}

ib_status og_write(og_graph *g, const char *path, int opset, const char *producer_version, int64_t *bytes) {
    if (g->failed) return ib_fail(IB_ERR_NOMEM, "%s: out of memory building the ONNX graph", path);
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    graph.name = g->name;
    graph.doc_string = g->doc;
    graph.n_node = g->nodes.n, graph.node = (Onnx__NodeProto **)g->nodes.p;
    graph.n_initializer = g->inits.n, graph.initializer = (Onnx__TensorProto **)g->inits.p;
    graph.n_input = g->inputs.n, graph.input = (Onnx__ValueInfoProto **)g->inputs.p;
    graph.n_output = g->outputs.n, graph.output = (Onnx__ValueInfoProto **)g->outputs.p;
    Onnx__OperatorSetIdProto ops = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsp = &ops;
    ops.domain = (char *)"";
    ops.has_version = 1, ops.version = opset;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1, model.ir_version = ir_version_for(opset);
    model.n_opset_import = 1, model.opset_import = &opsp;
    model.producer_name = (char *)"ibnas";
    model.producer_version = (char *)producer_version;
    model.has_model_version = 1, model.model_version = 1;
    model.graph = &graph;
    model.n_metadata_props = g->meta.n, model.metadata_props = (Onnx__StringStringEntryProto **)g->meta.p;

    size_t n = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return ib_fail(IB_ERR_NOMEM, "%s: out of memory for %zu bytes of ONNX model", path, n);
    size_t packed = onnx__model_proto__pack(&model, buf);
    IB_ASSERT(packed == n, "protobuf-c packed %zu bytes of %zu", packed, n);

    ib_status s = ib_write_file(path, buf, n);
    if (!s && bytes) *bytes = (int64_t)n;
    free(buf);
    return s;
}
