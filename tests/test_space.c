// Search spaces: the shipped spaces load and count (checked against a count made here from the JSON), random
// subnets are members that build and run, the largest / smallest subnets bound every random one in MACs,
// space JSON round-trips, bad spaces and foreign archs are rejected with messages naming the field, the
// public API and the `ibnas space` verbs (exit codes included).
#include "search/search.h"
#include "tests/test.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *space_names[] = {"mobiledets", "edgetpuv2", "union", "tiny"};
#define N_SPACES 4

// search/spaces/NAME.space.json from the working directory, else from the test binary's folder upwards.
static const char *space_path(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "search/spaces/%s.space.json", name);
    return project_path(rel);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    IB_ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

// The subnet count straight from the file's JSON, by the rule of search.h (not through space.c): per layer
// the sum over the stage's ops of the product of the list sizes each op uses, plus one for skip on layers
// after a stage's first. Returns the layer count; *log10c and *prod get the count.
static int independent_count(const char *path, long double *log10c, long double *prod) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    IB_ASSERT(root, "%s: %s", path, err.text);
    json_t *stages = json_object_get(root, "stages");
    int layers = 0;
    *log10c = 0, *prod = 1;
    for (size_t i = 0; i < json_array_size(stages); i++) {
        json_t *st = json_array_get(stages, i);
        long double nk = (long double)json_array_size(json_object_get(st, "kernel")),
                    ne = (long double)json_array_size(json_object_get(st, "expand")),
                    ng = (long double)json_array_size(json_object_get(st, "groups")),
                    ni = (long double)json_array_size(json_object_get(st, "r_in")),
                    no = (long double)json_array_size(json_object_get(st, "r_out"));
        long double per = 0;
        int skip = 0;
        json_t *ops = json_object_get(st, "op");
        for (size_t j = 0; j < json_array_size(ops); j++) {
            const char *op = json_string_value(json_array_get(ops, j));
            if (!strcmp(op, "ibn") || !strcmp(op, "fused")) per += nk * ne;
            else if (!strcmp(op, "gcibn")) per += nk * ne * ng;
            else if (!strcmp(op, "tucker")) per += nk * ni * no;
            else if (!strcmp(op, "skip")) skip = 1;
        }
        int n = (int)json_integer_value(json_object_get(st, "layers"));
        for (int l = 0; l < n; l++) {
            long double c = per + (l > 0 && skip ? 1 : 0);
            *log10c += log10l(c);
            *prod *= c;
            layers++;
        }
    }
    json_decref(root);
    return layers;
}

TEST(shipped_spaces_load_and_count) {
    static const int want_layers[N_SPACES] = {22, 22, 22, 6};
    static const char *want_count[N_SPACES] = {
        "48023489818559305679372288",        // 16^6 * 17^15: 16 choices (4 ibn, 4 fused, 8 tucker), 17 with skip
        "48023489818559305679372288",        // 4 ibn + 4 fused + 8 gcibn, the same numbers
        "177978515625000000000000000000",    // 24^6 * 25^15
        "74088000"};                         // 20^3 * 21^3
    for (int i = 0; i < N_SPACES; i++) {
        const char *path = space_path(space_names[i]);
        ib_space s;
        CHECK(ib_space_load(&s, path) == IB_OK, "%s: %s", path, ib_errmsg());
        CHECK(!strcmp(s.name, space_names[i]) && s.n_layers == want_layers[i], "%s: name %s, %d layers", path, s.name,
              s.n_layers);
        // Widths multiples of 8 (and so of gcibn's 4 groups).
        CHECK(s.stem_out % 8 == 0, "%s: stem width %d", path, s.stem_out);
        for (int j = 0; j < s.n_stages; j++) CHECK(s.stages[j].out % 8 == 0, "%s: stage %d width %d", path, j, s.stages[j].out);
        char count[1024];
        double lg = 0;
        ib_space_count(&s, count, sizeof count, &lg);
        long double ilog, iprod;
        int il = independent_count(path, &ilog, &iprod);
        CHECK(il == s.n_layers, "%s: %d layers counted here, %d by the space", path, il, s.n_layers);
        CHECK(fabsl((long double)lg - ilog) < 1e-9L, "%s: log10 %.12f, here %.12Lf", path, lg, ilog);
        long double parsed = strtold(count, NULL);
        CHECK(fabsl(parsed / iprod - 1) < 1e-15L, "%s: count %s, here %.6Le", path, count, iprod);
        CHECK(!strcmp(count, want_count[i]), "%s: count %s, want %s", path, count, want_count[i]);
        // A buffer too short gets the leading digits, NUL-terminated.
        char shortbuf[6];
        ib_space_count(&s, shortbuf, sizeof shortbuf, NULL);
        CHECK(!strncmp(shortbuf, want_count[i], 5) && strlen(shortbuf) == 5, "short buffer: '%s'", shortbuf);
        ib_space_free(&s);
    }
}

// The MobileDets space's layout: a fixed first ibn layer, skip only after each stage's first layer.
TEST(mobiledets_layers_and_choices) {
    ib_space s;
    CHECK(ib_space_load(&s, space_path("mobiledets")) == IB_OK, "%s", ib_errmsg());
    ib_block_cfg c[64];
    CHECK(ib_space_choices(&s, 0, c, 64) == 1 && c[0].op == IB_BLOCK_IBN && c[0].kernel == 3 && c[0].expand == 1 &&
              c[0].out == 16 && c[0].stride == 1,
          "layer 0 is a fixed ibn e1 k3");
    ib_space_layer L = ib_space_layer_info(&s, 5);
    CHECK(L.stage == 2 && L.index == 0 && L.cin == 24 && L.cout == 32 && L.stride == 2, "layer 5: stage %d index %d %d->%d s%d",
          L.stage, L.index, L.cin, L.cout, L.stride);
    L = ib_space_layer_info(&s, 6);
    CHECK(L.stage == 2 && L.index == 1 && L.cin == 32 && L.stride == 1, "layer 6");
    // Layer 5: 16 choices, no skip. Order: ibn (k3 e4, k3 e8, k5 e4, k5 e8), fused (same), tucker (k, r_in, r_out).
    int n = ib_space_choices(&s, 5, c, 64);
    CHECK(n == 16, "layer 5 has %d choices", n);
    CHECK(c[0].op == IB_BLOCK_IBN && c[0].kernel == 3 && c[0].expand == 4 && c[1].expand == 8 && c[2].kernel == 5 &&
              c[4].op == IB_BLOCK_FUSED && c[8].op == IB_BLOCK_TUCKER && c[8].r_in == 0.25f && c[8].r_out == 0.25f &&
              c[9].r_out == 0.75f && c[10].r_in == 0.75f && c[12].kernel == 5,
          "choice order");
    for (int i = 0; i < n; i++) CHECK(c[i].op != IB_BLOCK_SKIP && c[i].out == 32 && c[i].stride == 2, "choice %d", i);
    n = ib_space_choices(&s, 6, c, 64);
    CHECK(n == 17 && c[16].op == IB_BLOCK_SKIP && c[16].out == 32 && c[16].stride == 1, "layer 6: %d choices, skip last", n);
    CHECK(ib_space_choices(&s, 6, NULL, 0) == 17 && ib_space_choices(&s, 21, c, 64) == 16, "last layer: no skip");
    ib_space_free(&s);
}

// Random subnets are members of their space (the choice indices round-trip through the arch and its JSON),
// build as networks, and lie between the smallest and the largest subnet in MACs.
TEST(random_subnets_are_members_and_build) {
    for (int i = 0; i < N_SPACES; i++) {
        ib_space s;
        CHECK(ib_space_load(&s, space_path(space_names[i])) == IB_OK, "%s", ib_errmsg());
        int *choice = calloc((size_t)s.n_layers, sizeof(int)), *back = calloc((size_t)s.n_layers, sizeof(int));
        ib_arch a;
        ib_space_sample(&s, IB_SAMPLE_LARGEST, NULL, choice);
        CHECK(ib_space_arch(&s, choice, 0, &a) == IB_OK, "largest: %s", ib_errmsg());
        int64_t largest = ib_arch_macs(&a, s.input);
        ib_arch_free(&a);
        ib_space_sample(&s, IB_SAMPLE_SMALLEST, NULL, choice);
        CHECK(ib_space_arch(&s, choice, 0, &a) == IB_OK, "smallest: %s", ib_errmsg());
        int64_t smallest = ib_arch_macs(&a, s.input);
        ib_arch_free(&a);
        CHECK(smallest < largest, "%s: smallest %lld, largest %lld", s.name, (long long)smallest, (long long)largest);
        ib_rng r;
        ib_rng_seed(&r, 42, 7);
        int distinct = 0;
        int64_t prev = -1;
        for (int k = 0; k < 50; k++) {
            ib_space_sample(&s, IB_SAMPLE_RANDOM, &r, choice);
            CHECK(ib_space_arch(&s, choice, 10, &a) == IB_OK, "%s: arch: %s", s.name, ib_errmsg());
            CHECK(a.n_blocks == s.n_layers && a.classes == 10 && a.input == s.input && a.act == s.act &&
                      a.stem_out == s.stem_out && a.head_out == s.head_out && a.dropout == s.dropout &&
                      !strcmp(a.task, "classify"),
                  "%s: arch fields", s.name);
            char want_name[80];
            snprintf(want_name, sizeof want_name, "%s-subnet", s.name);
            CHECK(!strcmp(a.name, want_name), "name %s", a.name);
            CHECK(ib_space_check(&s, &a, "sample", back) == IB_OK, "%s: sample %d not in its space: %s", s.name, k,
                  ib_errmsg());
            CHECK(memcmp(choice, back, sizeof(int) * (size_t)s.n_layers) == 0, "%s: choices do not round-trip", s.name);
            // Through JSON: the same blocks, the same choices.
            char *json = ib_arch_to_json(&a);
            ib_arch b;
            CHECK(ib_arch_parse(&b, json, "sample.arch.json") == IB_OK, "reparse: %s", ib_errmsg());
            free(json);
            CHECK(memcmp(a.blocks, b.blocks, sizeof(ib_block_cfg) * (size_t)a.n_blocks) == 0, "%s: blocks differ after JSON",
                  s.name);
            memset(back, 0xff, sizeof(int) * (size_t)s.n_layers);
            CHECK(ib_space_check(&s, &b, "sample.arch.json", back) == IB_OK &&
                      memcmp(choice, back, sizeof(int) * (size_t)s.n_layers) == 0,
                  "%s: choices after JSON: %s", s.name, ib_errmsg());
            ib_arch_free(&b);
            int64_t m = ib_arch_macs(&a, s.input);
            a.classes = s.classes;
            int64_t mc = ib_arch_macs(&a, s.input);
            CHECK(mc <= largest && mc >= smallest, "%s: sample %d has %lld MACs, outside [%lld, %lld]", s.name, k,
                  (long long)mc, (long long)smallest, (long long)largest);
            distinct += m != prev;
            prev = m;
            ib_net net;
            CHECK(ib_net_build(&net, &a) == IB_OK, "%s: build: %s", s.name, ib_errmsg());
            CHECK(ib_net_param_count(&net) > 0, "parameters");
            if (i == 3 && k < 4) {   // tiny: a forward pass at its input size gives finite logits
                ib_net_init_weights(&net, (uint64_t)k);
                ib_ctx *ctx = ib_ctx_new();
                ctx->training = 0, ctx->recording = 0;
                ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){2, 3, s.input, s.input});
                fill_normal(x, 3, 1);
                ib_tensor *y = ib_net_forward(ctx, &net, x);
                int finite = y->shape[0] == 2 && y->shape[1] == s.classes;
                for (int64_t j = 0; j < ib_numel(y); j++) finite &= isfinite(y->data[j]);
                ib_ctx_free(ctx);
                CHECK(finite, "tiny forward");
            }
            ib_net_free(&net);
            ib_arch_free(&a);
        }
        CHECK(distinct > 40, "%s: only %d distinct MAC counts in 50 samples", s.name, distinct);
        // Out-of-range choices are refused.
        choice[1] = 1000;
        CHECK(ib_space_arch(&s, choice, 0, &a) == IB_ERR_ARG && strstr(ib_errmsg(), "layer 1"), "range: %s", ib_errmsg());
        free(choice);
        free(back);
        ib_space_free(&s);
    }
}

// Per layer, the largest choice has the most MACs at that layer's input size (and the smallest the fewest).
TEST(largest_and_smallest_per_layer) {
    ib_space s;
    CHECK(ib_space_load(&s, space_path("union")) == IB_OK, "%s", ib_errmsg());
    int big[32], small[32];
    ib_space_sample(&s, IB_SAMPLE_LARGEST, NULL, big);
    ib_space_sample(&s, IB_SAMPLE_SMALLEST, NULL, small);
    int h = (s.input + s.stem_stride - 1) / s.stem_stride;
    ib_block_cfg c[64];
    for (int l = 0; l < s.n_layers; l++) {
        ib_space_layer L = ib_space_layer_info(&s, l);
        int n = ib_space_choices(&s, l, c, 64);
        CHECK(n <= 64, "choices");
        int64_t mb = ib_block_macs(&c[big[l]], L.cin, h, h), ms = ib_block_macs(&c[small[l]], L.cin, h, h);
        for (int i = 0; i < n; i++) {
            int64_t m = ib_block_macs(&c[i], L.cin, h, h);
            CHECK(m <= mb && m >= ms, "layer %d choice %d: %lld outside [%lld, %lld]", l, i, (long long)m, (long long)ms,
                  (long long)mb);
        }
        if (L.index > 0) CHECK(c[small[l]].op == IB_BLOCK_SKIP, "layer %d: the smallest is skip", l);
        h = (h + L.stride - 1) / L.stride;
    }
    // In the union at 224 px the largest first layer of a stage is a 5x5 fused e8 (a full conv beats all).
    ib_space_choices(&s, 1, c, 64);
    CHECK(c[big[1]].op == IB_BLOCK_FUSED && c[big[1]].kernel == 5 && c[big[1]].expand == 8, "largest layer 1: %s k%d e%d",
          ib_block_op_name(c[big[1]].op), c[big[1]].kernel, c[big[1]].expand);
    ib_space_free(&s);
}

// Fair sampling (FairNAS): the union's layers allow ibn, fused, tucker, gcibn and (after a stage's first
// layer) skip; five paths a step, and per layer every op type the layer allows in exactly one of them,
// each path's choice one of the layer's (layer 0 allows ibn only: all five run it; layer 1, a stage's first,
// four ops: one runs twice), and the op orders and configurations vary from step to step.
TEST(fair_sampling_covers_every_op_once) {
    ib_space s;
    CHECK(ib_space_load(&s, space_path("union")) == IB_OK, "%s", ib_errmsg());
    int P = ib_space_fair_paths(&s), L = s.n_layers;
    CHECK(P == 5, "union: %d fair paths a step, expected 5", P);
    int *ch = malloc(sizeof(int) * (size_t)(P * L)), first_order[5] = {0}, orders_differ = 0, configs_differ = 0;
    int first_cfg = -1;
    ib_block_cfg c[64];
    ib_rng r;
    ib_rng_seed(&r, 7, 0);
    for (int step = 0; step < 20; step++) {
        ib_space_sample_fair(&s, &r, P, ch);
        for (int l = 0; l < L; l++) {
            int n = ib_space_choices(&s, l, c, 64), seen[IB_BLOCK_SKIP + 1] = {0}, allowed = 0;
            for (int i = 0; i < n; i++) allowed |= 1 << c[i].op;
            for (int p = 0; p < P; p++) {
                int k = ch[p * L + l];
                CHECK(k >= 0 && k < n, "step %d layer %d path %d: choice %d of %d", step, l, p, k, n);
                seen[c[k].op]++;
                if (l == 2 && step == 0) first_order[p] = c[k].op;
                if (l == 2 && step > 0 && (int)c[k].op != first_order[p]) orders_differ = 1;
                if (l == 3 && c[k].op == IB_BLOCK_TUCKER) {
                    if (first_cfg < 0) first_cfg = k;
                    else if (k != first_cfg) configs_differ = 1;
                }
            }
            int n_ops = 0;
            for (int op = 0; op <= IB_BLOCK_SKIP; op++) n_ops += (allowed >> op) & 1;
            for (int op = 0; op <= IB_BLOCK_SKIP; op++) {
                int want = !((allowed >> op) & 1) ? 0 : P / n_ops + (0 < P % n_ops);   // wraps when fewer
                if (n_ops == P) CHECK(seen[op] == want, "step %d layer %d: op %s ran in %d paths, expected %d", step, l,
                                      ib_block_op_name((ib_block_op)op), seen[op], want);
                else CHECK(seen[op] <= want && (!want || seen[op] >= 1), "step %d layer %d: op %s ran in %d paths", step,
                           l, ib_block_op_name((ib_block_op)op), seen[op]);
            }
        }
    }
    CHECK(orders_differ, "the op order of layer 2 never changed in 20 steps");
    CHECK(configs_differ, "layer 3's tucker configuration never changed in 20 steps");
    free(ch);
    ib_space_free(&s);
}

// Chained op types (--op-ramp) on mobiledets (layer 0 ibn only; then ibn, fused, tucker, and skip after a stage's
// first layer): per non-skip layer after the first searchable one, the op type equals the last non-skip one's with
// probability (1 - q) + q / 3; skip comes with probability 1/4 wherever allowed, whatever q; the chains' op types
// are uniform. 2,000 paths per q: the frequencies are checked to within about five standard errors.
TEST(chained_sampling_keeps_op_types_by_q) {
    ib_space s;
    CHECK(ib_space_load(&s, space_path("mobiledets")) == IB_OK, "%s", ib_errmsg());
    const int L = s.n_layers, N = 2000;
    int ch[64];
    ib_block_cfg c[64];
    ib_rng r;
    ib_rng_seed(&r, 11, 0);
    const float qs[3] = {0, 0.5f, 1};
    for (int qi = 0; qi < 3; qi++) {
        long kept = 0, pairs = 0, skips = 0, skippable = 0, first_op[IB_BLOCK_SKIP + 1] = {0};
        for (int i = 0; i < N; i++) {
            ib_space_sample_chained(&s, &r, qs[qi], ch);
            int carry = -1;
            for (int l = 0; l < L; l++) {
                int n = ib_space_choices(&s, l, c, 64), allows_skip = 0;
                CHECK(ch[l] >= 0 && ch[l] < n, "q %g layer %d: choice %d of %d", qs[qi], l, ch[l], n);
                for (int k = 0; k < n; k++) allows_skip |= c[k].op == IB_BLOCK_SKIP;
                int op = (int)c[ch[l]].op;
                if (allows_skip) skippable++, skips += op == IB_BLOCK_SKIP;
                if (l == 0 || op == IB_BLOCK_SKIP) continue;
                if (carry < 0) first_op[op]++;
                else pairs++, kept += op == carry;
                carry = op;
            }
        }
        double want = (1 - qs[qi]) + qs[qi] / 3, got = (double)kept / (double)pairs;
        CHECK(fabs(got - want) < 0.03, "q %g: op type kept in %.3f of %ld layers, expected %.3f", qs[qi], got, pairs, want);
        double sk = (double)skips / (double)skippable;
        CHECK(fabs(sk - 0.25) < 0.02, "q %g: skip in %.3f of skippable layers, expected 0.25", qs[qi], sk);
        for (int op = IB_BLOCK_IBN; op <= IB_BLOCK_TUCKER; op++)
            CHECK(fabs(first_op[op] / (double)N - 1.0 / 3) < 0.06, "q %g: %s starts %ld of %d paths", qs[qi],
                  ib_block_op_name((ib_block_op)op), first_op[op], N);
    }
    ib_space_free(&s);
}

TEST(space_json_round_trip) {
    for (int i = 0; i < N_SPACES; i++) {
        ib_space a, b;
        CHECK(ib_space_load(&a, space_path(space_names[i])) == IB_OK, "%s", ib_errmsg());
        char *j1 = ib_space_to_json(&a);
        CHECK(ib_space_parse(&b, j1, "written") == IB_OK, "%s: reparse: %s\n%s", a.name, ib_errmsg(), j1);
        char *j2 = ib_space_to_json(&b);
        CHECK(!strcmp(j1, j2), "round trip differs:\n%s\n%s", j1, j2);
        CHECK(a.n_stages == b.n_stages && a.n_layers == b.n_layers && a.input == b.input && a.classes == b.classes &&
                  a.act == b.act && a.stem_out == b.stem_out && a.head_out == b.head_out && a.dropout == b.dropout &&
                  !strcmp(a.name, b.name) && memcmp(a.stages, b.stages, sizeof(ib_space_stage) * (size_t)a.n_stages) == 0,
              "%s: fields differ after the round trip", a.name);
        free(j1);
        free(j2);
        ib_space_free(&a);
        ib_space_free(&b);
    }
    // Odd values survive too: a ratio that %g would round, a name with a quote.
    const char *text =
        "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"q\\\"x\", \"input\": 40, \"act\": \"hswish\","
        " \"stem\": {\"out\": 8, \"kernel\": 5, \"stride\": 1},"
        " \"stages\": [{\"out\": 16, \"stride\": 2, \"layers\": 3, \"op\": [\"tucker\", \"skip\"], \"kernel\": [1, 7],"
        " \"r_in\": [0.3333333], \"r_out\": [0.1, 1]}], \"head\": {\"out\": 0, \"dropout\": 0.05}}";
    ib_space a, b;
    CHECK(ib_space_parse(&a, text, "odd") == IB_OK, "odd: %s", ib_errmsg());
    char *j = ib_space_to_json(&a);
    CHECK(ib_space_parse(&b, j, "odd2") == IB_OK, "odd reparse: %s\n%s", ib_errmsg(), j);
    CHECK(!strcmp(a.name, "q\"x") && !strcmp(b.name, a.name) && b.stages[0].r_in[0] == a.stages[0].r_in[0] &&
              b.dropout == a.dropout && b.head_out == 0 && b.act == IB_ACT_HSWISH,
          "odd values: %s", j);
    free(j);
    ib_space_free(&a);
    ib_space_free(&b);
}

static void expect_space_error(const char *text, const char *want1, const char *want2) {
    ib_space s;
    ib_status st = ib_space_parse(&s, text, "bad.space.json");
    CHECK(st == IB_ERR_FORMAT, "accepted: %s", text);
    CHECK(strstr(ib_errmsg(), "bad.space.json") && strstr(ib_errmsg(), want1) && (!want2 || strstr(ib_errmsg(), want2)),
          "message '%s' lacks '%s' / '%s'", ib_errmsg(), want1, want2 ? want2 : "");
    CHECK(s.stages == NULL && s.n_layers == 0, "a failed parse leaves the space empty");
}

#define SHDR "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"t\", "
#define STAGE0 "{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3], \"expand\": [1]}"

TEST(bad_spaces_name_the_field) {
    expect_space_error("{\n  \"format\": \"ibnas-space\",,\n}", "bad.space.json:2:27:", NULL);   // syntax: line 2, column 27
    expect_space_error(SHDR "\"stages\": [" STAGE0 ", {\"out\": 24, \"stride\": 2, \"layers\": 2, \"op\": [\"ibn\"],"
                            " \"kernel\": [3], \"expand\": [4], \"kernl\": [3]}]}",
                       "stages[1].kernl", "unknown field");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3, 4],"
                            " \"expand\": [1]}]}",
                       "stages[0].kernel", "4 is not allowed (odd, 1 to 9)");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [5, 3],"
                            " \"expand\": [1]}]}",
                       "stages[0].kernel", "ascending and unique");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3],"
                            " \"expand\": [1, 2, 3, 4, 5, 6, 7, 8, 8]}]}",
                       "stages[0].expand", "1 to 8");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3],"
                            " \"expand\": [9]}]}",
                       "stages[0].expand", "9");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"conv\"], \"kernel\": [3]}]}",
                       "stages[0].op", "\"conv\" is not an op");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"tucker\"], \"kernel\": [3],"
                            " \"r_out\": [0.25]}]}",
                       "stages[0].r_in", "missing");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"tucker\"], \"kernel\": [3],"
                            " \"r_in\": [0], \"r_out\": [0.25]}]}",
                       "stages[0].r_in", "(0, 1]");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3],"
                            " \"expand\": [1], \"groups\": [2]}]}",
                       "stages[0].groups", "no op of the stage uses it");
    expect_space_error(SHDR "\"stem\": {\"out\": 18}, \"stages\": [{\"out\": 24, \"stride\": 2, \"layers\": 2,"
                            " \"op\": [\"gcibn\"], \"kernel\": [3], \"expand\": [4], \"groups\": [4]}]}",
                       "stages[0].groups", "4 does not divide the stage's input width 18");
    expect_space_error(SHDR "\"stages\": [{\"out\": 20, \"stride\": 2, \"layers\": 2,"
                            " \"op\": [\"gcibn\"], \"kernel\": [3], \"expand\": [4], \"groups\": [8]}]}",
                       "stages[0].groups", "width 20");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 3, \"layers\": 1, \"op\": [\"ibn\"], \"kernel\": [3],"
                            " \"expand\": [1]}]}",
                       "stages[0].stride", "out of range");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 0, \"op\": [\"ibn\"], \"kernel\": [3],"
                            " \"expand\": [1]}]}",
                       "stages[0].layers", "out of range");
    expect_space_error(SHDR "\"stages\": [{\"out\": 16, \"stride\": 1, \"layers\": 2, \"op\": [\"skip\"]}]}", "stages[0].op",
                       "no choice");
    expect_space_error(SHDR "\"stages\": []}", "stages", "non-empty");
    expect_space_error("{\"format\": \"ibnas-arch\", \"version\": 1, \"blocks\": []}", "format", "arch file");
    expect_space_error("{\"format\": \"ibnas-pack\", \"version\": 1}", "format", "\"ibnas-space\"");
    expect_space_error("{\"format\": \"ibnas-space\", \"version\": 2, \"stages\": [" STAGE0 "]}", "version",
                       "this build reads version 1");
    expect_space_error(SHDR "\"stem\": {\"out\": 16, \"kernel\": 4}, \"stages\": [" STAGE0 "]}", "stem.kernel", "odd");
    expect_space_error(SHDR "\"head\": {\"out\": 64, \"dropuot\": 0.1}, \"stages\": [" STAGE0 "]}", "head.dropuot",
                       "unknown field");
    ib_space s;
    CHECK(ib_space_load(&s, "/nonexistent/x.space.json") == IB_ERR_IO && strstr(ib_errmsg(), "/nonexistent/x.space.json"),
          "missing file: %s", ib_errmsg());
}

// skip yields a choice only after a stage's first layer: never in a one-layer stride-2 stage, but on the later
// layers of a stage whose first layer changes the width.
TEST(skip_only_after_a_stage_first_layer) {
    const char *text = SHDR "\"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 2}, \"stages\": ["
                            "{\"out\": 24, \"stride\": 2, \"layers\": 1, \"op\": [\"ibn\", \"skip\"], \"kernel\": [3], \"expand\": [4]},"
                            "{\"out\": 32, \"stride\": 1, \"layers\": 2, \"op\": [\"ibn\", \"skip\"], \"kernel\": [3], \"expand\": [4]}]}";
    ib_space s;
    CHECK(ib_space_parse(&s, text, "skip") == IB_OK, "%s", ib_errmsg());
    ib_block_cfg c[8];
    int n0 = ib_space_choices(&s, 0, c, 8);
    CHECK(n0 == 1 && c[0].op == IB_BLOCK_IBN, "stride-2 stage: %d choices", n0);
    int n1 = ib_space_choices(&s, 1, c, 8);
    CHECK(n1 == 1 && c[0].op == IB_BLOCK_IBN, "first layer changing the width: %d choices", n1);
    int n2 = ib_space_choices(&s, 2, c, 8);
    CHECK(n2 == 2 && c[1].op == IB_BLOCK_SKIP && c[1].out == 32 && c[1].stride == 1, "later layer: %d choices", n2);
    char count[64];
    ib_space_count(&s, count, sizeof count, NULL);
    CHECK(!strcmp(count, "2"), "count %s", count);
    ib_space_free(&s);
}

static void expect_not_in_space(const ib_space *s, const ib_arch *a, const char *want1, const char *want2) {
    ib_status st = ib_space_check(s, a, "a.arch.json", NULL);
    CHECK(st == IB_ERR_ARG, "accepted");
    CHECK(strstr(ib_errmsg(), "a.arch.json: ") && strstr(ib_errmsg(), want1) && (!want2 || strstr(ib_errmsg(), want2)),
          "message '%s' lacks '%s' / '%s'", ib_errmsg(), want1, want2 ? want2 : "");
}

TEST(archs_not_in_the_space_are_rejected) {
    ib_space s;
    CHECK(ib_space_load(&s, space_path("mobiledets")) == IB_OK, "%s", ib_errmsg());
    int choice[22] = {0};
    ib_arch a;
    CHECK(ib_space_arch(&s, choice, 0, &a) == IB_OK, "%s", ib_errmsg());
    CHECK(ib_space_check(&s, &a, "a.arch.json", NULL) == IB_OK, "the first subnet: %s", ib_errmsg());
    ib_block_cfg keep = a.blocks[5];
    a.blocks[5].kernel = 7;
    expect_not_in_space(&s, &a, "a.arch.json: blocks[5].kernel: 7 is not allowed in stage 2 (3, 5)", NULL);
    a.blocks[5] = keep, a.blocks[5].expand = 6;
    expect_not_in_space(&s, &a, "blocks[5].expand: 6 is not allowed in stage 2 (4, 8)", NULL);
    a.blocks[5] = keep, a.blocks[5].op = IB_BLOCK_GCIBN, a.blocks[5].groups = 2;
    expect_not_in_space(&s, &a, "blocks[5].op: gcibn is not allowed in stage 2 (ibn, fused, tucker, skip)", NULL);
    a.blocks[5] = keep, a.blocks[5].op = IB_BLOCK_TUCKER, a.blocks[5].r_in = 0.5f;
    expect_not_in_space(&s, &a, "blocks[5].r_in: 0.5 is not allowed in stage 2 (0.25, 0.75)", NULL);
    a.blocks[5] = keep, a.blocks[5].op = IB_BLOCK_SKIP, a.blocks[5].stride = 1, a.blocks[5].out = 24;
    expect_not_in_space(&s, &a, "blocks[5].op: skip is not allowed on the first layer of stage 2", NULL);
    a.blocks[5] = keep, a.blocks[5].out = 40;
    expect_not_in_space(&s, &a, "blocks[5].out: 40, stage 2 has width 32", NULL);
    a.blocks[5] = keep, a.blocks[5].stride = 1;
    expect_not_in_space(&s, &a, "blocks[5].stride: 1", "stride 2");
    a.blocks[5] = keep, a.blocks[5].se = 0.25f;
    expect_not_in_space(&s, &a, "blocks[5].se", "squeeze-excite");
    a.blocks[5] = keep;
    a.stem_out = 16;
    expect_not_in_space(&s, &a, "stem", "out 32");
    a.stem_out = 32, a.head_out = 960;
    expect_not_in_space(&s, &a, "head.out: 960", NULL);
    a.head_out = 1280, a.n_blocks = 21;
    expect_not_in_space(&s, &a, "21 blocks", "22 layers");
    a.n_blocks = 22;
    CHECK(ib_space_check(&s, &a, "a.arch.json", NULL) == IB_OK, "restored: %s", ib_errmsg());
    ib_arch_free(&a);
    // mobilenetv2 is not a MobileDets subnet: 17 blocks.
    ib_arch_mobilenetv2(&a, 1.0f, 1000);
    expect_not_in_space(&s, &a, "17 blocks", NULL);
    ib_arch_free(&a);
    ib_space_free(&s);
}

TEST(public_api) {
    ib_space *s = NULL;
    CHECK(ib_space_open(&s, "/nonexistent.space.json") == IB_ERR_IO && s == NULL, "missing file");
    CHECK(ib_space_open(&s, space_path("tiny")) == IB_OK, "%s", ib_errmsg());
    CHECK(!strcmp(ib_space_name(s), "tiny") && ib_space_layers(s) == 6 && ib_space_input_size(s) == 32, "accessors");
    char count[64];
    double lg = ib_space_subnets(s, count, sizeof count);
    CHECK(!strcmp(count, "74088000") && fabs(lg - log10(74088000.0)) < 1e-9, "subnets %s (10^%f)", count, lg);
    char *a1 = NULL, *a2 = NULL, *a3 = NULL;
    CHECK(ib_space_sample_arch(s, "random", 5, 0, &a1) == IB_OK && ib_space_sample_arch(s, "random", 5, 0, &a2) == IB_OK &&
              ib_space_sample_arch(s, "random", 6, 0, &a3) == IB_OK,
          "%s", ib_errmsg());
    CHECK(!strcmp(a1, a2) && strcmp(a1, a3), "the seed decides the sample");
    free(a2);
    CHECK(ib_space_check_arch(s, a1) == IB_OK, "JSON text: %s", ib_errmsg());
    char path[512];
    snprintf(path, sizeof path, "%s/api.arch.json", test_tmpdir());
    write_text(path, a3);
    CHECK(ib_space_check_arch(s, path) == IB_OK, "file: %s", ib_errmsg());
    // The subnet builds through the public API, with the class count asked for.
    char *big = NULL, *small = NULL;
    CHECK(ib_space_sample_arch(s, "largest", 0, 3, &big) == IB_OK && ib_space_sample_arch(s, "smallest", 0, 0, &small) == IB_OK,
          "%s", ib_errmsg());
    ib_model *m;
    CHECK(ib_model_create(&m, big, 0, 1) == IB_OK, "model: %s", ib_errmsg());
    CHECK(ib_model_classes(m) == 3 && ib_model_input_size(m) == 32 && !strcmp(ib_model_name(m), "tiny-subnet"), "model fields");
    ib_model_free(m);
    int64_t mb = 0, ms = 0, m1 = 0, m64 = 0;
    CHECK(ib_arch_count_macs(big, 0, &mb) == IB_OK && ib_arch_count_macs(small, 0, &ms) == IB_OK &&
              ib_arch_count_macs(a1, 0, &m1) == IB_OK && ib_arch_count_macs(a1, 64, &m64) == IB_OK,
          "macs: %s", ib_errmsg());
    CHECK(ms < m1 && m1 < mb && m64 > 3 * m1, "MACs: smallest %lld, random %lld, largest %lld, random at 64 px %lld",
          (long long)ms, (long long)m1, (long long)mb, (long long)m64);
    ib_arch a;
    CHECK(ib_arch_parse(&a, a1, "a1") == IB_OK && ib_arch_macs(&a, 32) == m1, "count_macs = ib_arch_macs");
    ib_arch_free(&a);
    CHECK(ib_space_sample_arch(s, "medium", 0, 0, &a2) == IB_ERR_ARG && strstr(ib_errmsg(), "medium") && a2 == NULL,
          "bad kind: %s", ib_errmsg());
    CHECK(ib_space_check_arch(s, "mobilenetv2") == IB_ERR_ARG && strstr(ib_errmsg(), "blocks"), "mobilenetv2: %s",
          ib_errmsg());
    CHECK(ib_space_check_arch(s, "/nonexistent.arch.json") == IB_ERR_IO, "missing arch");
    free(a1), free(a3), free(big), free(small);
    ib_space_close(s);
    ib_space_close(NULL);
}

// `ibnas space count|sample|check` as a user runs them.
TEST(space_command) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    char cmd[4096], out_path[512];
    char *out = NULL, *err = NULL;
    const char *mobiledets = space_path("mobiledets"), *tiny = space_path("tiny");
    snprintf(cmd, sizeof cmd, "%s space count --space %s", bin, mobiledets);
    int rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "48023489818559305679372288") && strstr(out, "22 layers"), "count: rc %d, %s%s", rc, out, err);
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s space count --space %s --json", bin, tiny);
    rc = test_run(cmd, &out, &err);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    CHECK(rc == 0 && j, "count --json: rc %d, %s%s", rc, out, err);
    CHECK(!strcmp(json_string_value(json_object_get(j, "subnets")), "74088000") &&
              json_integer_value(json_object_get(j, "layers")) == 6 &&
              fabs(json_number_value(json_object_get(j, "log10")) - 7.8697) < 1e-4,
          "count --json: %s", out);
    json_decref(j);
    free(out), free(err);
    // sample writes an arch that check accepts; its MACs are the arch's.
    snprintf(out_path, sizeof out_path, "%s/cli.arch.json", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s space sample --space %s --seed 9 --classes 5 --out %s", bin, mobiledets, out_path);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, out_path) && strstr(out, "M MACs at 224 px"), "sample: rc %d, %s%s", rc, out, err);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    CHECK(access(tmp, F_OK) != 0, "the .tmp file is left behind");
    ib_arch a;
    CHECK(ib_arch_load(&a, out_path) == IB_OK && a.classes == 5 && a.n_blocks == 22, "written arch: %s", ib_errmsg());
    double shown = 0;
    const char *p = strstr(out, "blocks, ");
    CHECK(p && sscanf(p, "blocks, %lf M MACs", &shown) == 1, "MACs in '%s'", out);
    CHECK(fabs(shown - (double)ib_arch_macs(&a, 224) / 1e6) < 0.006, "shown %.2f M MACs, arch has %lld", shown,
          (long long)ib_arch_macs(&a, 224));
    free(out), free(err);
    snprintf(cmd, sizeof cmd, "%s space check --space %s --arch %s", bin, mobiledets, out_path);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "ok: ") && strstr(out, "is in space mobiledets"), "check: rc %d, %s%s", rc, out, err);
    free(out), free(err);
    // A changed kernel: exit 1 naming the block and field.
    a.blocks[5].kernel = 7;
    CHECK(a.blocks[5].op != IB_BLOCK_SKIP, "layer 5 is a stage's first");
    CHECK(ib_arch_save(&a, out_path) == IB_OK, "save: %s", ib_errmsg());
    ib_arch_free(&a);
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 1 && strstr(err, "blocks[5].kernel: 7 is not allowed in stage 2 (3, 5)") && strstr(err, out_path),
          "bad check: rc %d, %s", rc, err);
    free(out), free(err);
    // --largest and --smallest bound the random sample's MACs.
    snprintf(cmd, sizeof cmd, "(%s space sample --space %s --largest --out %s/big.arch.json && %s space sample --space %s"
             " --smallest --out %s/small.arch.json)", bin, tiny, test_tmpdir(), bin, tiny, test_tmpdir());
    rc = test_run(cmd, &out, &err);
    CHECK(rc == 0 && strstr(out, "the largest subnet of space tiny") && strstr(out, "the smallest subnet"), "largest/smallest: %s%s",
          out, err);
    free(out), free(err);
    // Usage errors exit 2; a missing file exits 1 naming it.
    const struct { const char *args; int rc; const char *msg; } bad[] = {
        {"space count", 2, "--space is required"},
        {"space", 2, "count, sample or check"},
        {"space shrink --space x", 2, "unknown action 'shrink'"},
        {"space count --space /nonexistent/s.space.json", 1, "/nonexistent/s.space.json"},
        {"space sample --space SPACE_TINY --out /nonexistent/x --largest --smallest", 2, "exclude"},
        {"space sample --space SPACE_TINY", 2, "--out is required"},
        {"space check --space SPACE_TINY", 2, "--arch is required"},
        {"space check --space SPACE_TINY --arch mobilenetv2", 1, "17 blocks"},
        {"space count --space SPACE_TINY --bogus", 2, "unknown flag '--bogus'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[1024];
        const char *at = strstr(bad[i].args, "SPACE_TINY");
        if (at) snprintf(args, sizeof args, "%.*s%s%s", (int)(at - bad[i].args), bad[i].args, tiny, at + 10);
        else snprintf(args, sizeof args, "%s", bad[i].args);
        snprintf(cmd, sizeof cmd, "%s %s", bin, args);
        rc = test_run(cmd, &out, &err);
        CHECK(rc == bad[i].rc && strstr(err, bad[i].msg), "'%s': rc %d (want %d), stderr: %s", args, rc, bad[i].rc, err);
        free(out), free(err);
    }
    snprintf(cmd, sizeof cmd, "%s space --help", bin);
    rc = test_run(cmd, &out, NULL);
    CHECK(rc == 0 && strstr(out, "ibnas space sample"), "--help: %s", out);
    free(out);
}
