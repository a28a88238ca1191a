// api: an ONNX graph under construction, over the protobuf-c messages compiled from api/onnx/onnx.proto.
// The exporter (api/export.c) adds float initializers, nodes with attributes, the graph's inputs and
// outputs and metadata, then writes the model once. Private to api/: a task head (detection boxes,
// segmentation logits) is exported by adding its nodes with the same calls after the backbone's.
//
// Failures are sticky: the first allocation that fails marks the graph, later calls do nothing, and
// og_write returns the error. So a caller checks once, at the end.
#ifndef IB_ONNX_GRAPH_H
#define IB_ONNX_GRAPH_H

#include "core/core.h"

typedef struct og_graph og_graph;
typedef struct Onnx__NodeProto og_node;

og_graph *og_new(const char *name);   // NULL: out of memory
void og_free(og_graph *g);

// A float32 initializer holding a copy of data (dims[ndim], row-major); returns its name as stored.
const char *og_initializer(og_graph *g, const char *name, int ndim, const int64_t *dims, const float *data);
// A scalar float initializer (rank 0), made once per distinct name.
const char *og_scalar(og_graph *g, const char *name, float v);
// A node `op` reading the n named inputs (NULL entries are ONNX's empty "missing input"), writing one
// output value named `out`; the node carries `out` as its name too. Returns the node for attributes.
og_node *og_add_node(og_graph *g, const char *op, int n, const char *const *inputs, const char *out);
void og_attr_int(og_graph *g, og_node *n, const char *name, int64_t v);
void og_attr_float(og_graph *g, og_node *n, const char *name, float v);
void og_attr_ints(og_graph *g, og_node *n, const char *name, int count, const int64_t *v);
void og_attr_str(og_graph *g, og_node *n, const char *name, const char *v);

// Graph inputs and outputs: float32 tensors; a dimension < 0 is symbolic, named by `dyn` ("N").
void og_input(og_graph *g, const char *name, int ndim, const int64_t *dims, const char *dyn);
void og_output(og_graph *g, const char *name, int ndim, const int64_t *dims, const char *dyn);
void og_meta(og_graph *g, const char *key, const char *value);
void og_set_doc(og_graph *g, const char *doc);

int og_node_count(const og_graph *g);
int og_initializer_count(const og_graph *g);

// Packs the model (ONNX operator set `opset` of the default domain, the IR version that goes with it)
// and writes it as PATH.tmp, renamed to PATH when complete; nothing is left under PATH on failure.
// *bytes (may be NULL) receives the file's size.
ib_status og_write(og_graph *g, const char *path, int opset, const char *producer_version, int64_t *bytes);

#endif
