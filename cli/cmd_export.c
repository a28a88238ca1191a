// ibnas export: a checkpoint as an ONNX model (docs/EXPORT.md), through the public API (include/ibnas.h).
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas export --model CKPT.h5 --out M.onnx [--format onnx] [--opset 13] [--res R] [--batch N|dynamic]\n"
    "                    [--keep-bn]\n\n"
    "Writes the checkpoint's eval-mode network (BN running statistics, no dropout) as an ONNX model: input\n"
    "'input' (batch, 3, R, R) normalised as ibnas normalises images (ImageNet mean and std, in the model's\n"
    "metadata), output 'logits' (batch, classes). A segmentation checkpoint (train --task segment, either\n"
    "head) is written whole: input (batch, 3, H, W) at the size it was trained at (--res R: R x R), output\n"
    "'logits' (batch, classes, H, W). BN is folded into the convolutions unless --keep-bn.\n"
    "ONNX Runtime gives the logits ibnas gives (docs/EXPORT.md).\n";

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *format = "onnx", *batch = "1";
    int opset = 13, res = 0, keep_bn = 0, json = 0;
    const cli_flag flags[] = {
        {"--model", F_STR, &model, "an ibnas checkpoint: trained, extracted from a supernet, converted (required)"},
        {"--out", F_STR, &out, "the file to write (required)"},
        {"--format", F_STR, &format, "onnx (default; the only format so far)"},
        {"--opset", F_INT, &opset, "ONNX operator set, 11 to 21 (default 13)"},
        {"--res", F_INT, &res, "input height and width (default: the model's input size)"},
        {"--batch", F_STR, &batch, "images per run, fixed in the file (default 1), or 'dynamic'"},
        {"--keep-bn", F_BOOL, &keep_bn, "keep BatchNormalization nodes (default: folded into the convs)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("export", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!model || !out) {
        fprintf(stderr, "ibnas export: --model and --out are required (ibnas export --help)\n");
        return 2;
    }
    ib_export_opts o;
    ib_export_opts_default(&o);
    o.format = format;
    o.opset = opset;
    o.res = res;
    o.keep_bn = keep_bn;
    if (!strcmp(batch, "dynamic")) o.batch = 0;
    else {
        char *end;
        long b = strtol(batch, &end, 10);
        if (!*batch || *end || b < 1 || b > 1 << 20) {
            fprintf(stderr, "ibnas export: --batch wants a positive size or 'dynamic', got '%s'\n", batch);
            return 2;
        }
        o.batch = (int)b;
    }
    ib_model *m;
    ib_status s = ib_model_load(&m, model);
    if (s) return cli_report("export", s);
    ib_export_report er;
    s = ib_model_export(m, out, &o, &er);
    if (!s) {
        int seg = !strcmp(ib_model_task(m), "segment");
        char shape[96], res_json[16];
        if (er.height == er.width) snprintf(res_json, sizeof res_json, "%d", er.height);
        else snprintf(res_json, sizeof res_json, "null");   // not square: height and width say it
        if (seg) snprintf(shape, sizeof shape, "(batch, %d, %d, %d)", ib_model_classes(m), er.height, er.width);
        else snprintf(shape, sizeof shape, "(batch, %d)", ib_model_classes(m));
        if (json)
            printf("{\"out\": \"%s\", \"format\": \"%s\", \"opset\": %d, \"task\": \"%s\", \"res\": %s, \"height\": %d, "
                   "\"width\": %d, \"batch\": %s%s%s, \"keep_bn\": %s, \"nodes\": %d, \"initializers\": %d, \"bytes\": %lld}\n",
                   out, format, opset, ib_model_task(m), res_json, er.height, er.width,
                   o.batch ? "" : "\"", o.batch ? batch : "dynamic", o.batch ? "" : "\"", keep_bn ? "true" : "false",
                   er.nodes, er.initializers, (long long)er.bytes);
        fprintf(stderr, "ibnas export: %s -> %s (%s opset %d, %s, input %dx%d, batch %s, BN %s, logits %s): %d nodes, "
                "%d initializers, %lld bytes\n", model, out, format, opset, seg ? "segmentation network and its head" :
                "classifier", er.height, er.width, o.batch ? batch : "dynamic", keep_bn ? "kept" : "folded", shape,
                er.nodes, er.initializers, (long long)er.bytes);
    }
    ib_model_free(m);
    return s ? cli_report("export", s) : 0;
}
