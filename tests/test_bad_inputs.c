// Every reader against broken input: a corpus of bad files made here, in the scratch folder (truncated,
// bit-flipped, empty, float64 for float32, wrong shape, huge dimensions, NaN weights, a supernet for a
// checkpoint and the reverse, bad CRCs, duplicate JSON keys, ids out of range, bad rows), and the unusual
// files that are valid (16-bit, 2-bit and tRNS PNGs, JPEG 4:2:2 and restart markers, 1xN images), which
// must decode to the right pixels. A bad file must give an error status and a message naming the file
// and what is wrong; none may crash (the suite runs under `make SANITIZE=1 test` too).
#include "layers/layers.h"
#include "search/search.h"
#include "tests/test.h"

#include <hdf5.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *scratch(const char *name) {
    static char bufs[64][512];   // a test's table of cases holds many at once
    static int k;
    char *b = bufs[k++ % 64];
    snprintf(b, 512, "%s/%s", test_tmpdir(), name);
    return b;
}

static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    IB_ASSERT(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    IB_ASSERT(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    IB_ASSERT(b && fread(b, 1, *n, f) == *n, "cannot read %s", path);
    fclose(f);
    return b;
}

// A copy of src cut to `keep` bytes, or with byte `at` xor-ed with `flip`.
static const char *variant(const char *src, const char *name, size_t keep, size_t at, uint8_t flip) {
    size_t n;
    uint8_t *b = read_bytes(src, &n);
    if (at < n) b[at] ^= flip;
    const char *out = scratch(name);
    write_bytes(out, b, keep < n ? keep : n);
    free(b);
    return out;
}

// The error a reader gave: not OK, and the message names the file and holds `what` (NULL: anything).
static int rejected(ib_status st, const char *path, const char *what, char *why, size_t n) {
    const char *m = ib_errmsg();
    if (st == IB_OK) snprintf(why, n, "%s was accepted", path);
    else if (!strstr(m, path)) snprintf(why, n, "the message does not name %s: %s", path, m);
    else if (what && !strstr(m, what)) snprintf(why, n, "the message lacks '%s': %s", what, m);
    else return 1;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Images

// A w x h image of bit depth `depth` and libpng colour type `ct`; samples from a fixed pattern, and with
// `trns` a transparent colour. The 8-bit RGB the decoder should give is written to want.
static void write_png(const char *path, int w, int h, int ct, int depth, int trns, uint8_t *want) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    IB_ASSERT(f && png && info && !setjmp(png_jmpbuf(png)), "libpng write %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_color pal[4] = {{10, 20, 30}, {200, 100, 0}, {0, 255, 128}, {90, 90, 90}};
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, pal, 4);
    png_byte alpha[4] = {0, 128, 255, 255};
    png_color_16 tc = {.gray = 1};
    if (trns) png_set_tRNS(png, info, ct == PNG_COLOR_TYPE_PALETTE ? alpha : NULL, ct == PNG_COLOR_TYPE_PALETTE ? 4 : 0,
                           ct == PNG_COLOR_TYPE_PALETTE ? NULL : &tc);
    png_write_info(png, info);
    int comps = ct == PNG_COLOR_TYPE_RGB ? 3 : 1, bps = depth == 16 ? 2 : 1, maxv = (1 << depth) - 1;
    uint8_t *row = calloc((size_t)w * comps * bps + 1, 1);
    for (int y = 0; y < h; y++) {
        memset(row, 0, (size_t)w * comps * bps + 1);
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++) {
                int v = (x * 7 + y * 13 + c * 5) % (ct == PNG_COLOR_TYPE_PALETTE ? 4 : maxv + 1);
                if (depth == 16) {
                    row[(x * comps + c) * 2] = (uint8_t)(v >> 8), row[(x * comps + c) * 2 + 1] = (uint8_t)v;
                } else if (depth < 8) {
                    int per = 8 / depth, bit = 8 - depth * (x % per + 1);
                    row[x / per] |= (uint8_t)(v << bit);
                } else {
                    row[x * comps + c] = (uint8_t)v;
                }
                uint8_t *o = want + ((size_t)y * w + x) * 3;
                if (ct == PNG_COLOR_TYPE_PALETTE) o[0] = pal[v].red, o[1] = pal[v].green, o[2] = pal[v].blue;
                else if (ct == PNG_COLOR_TYPE_GRAY) o[0] = o[1] = o[2] = (uint8_t)(v * 255 / maxv);
                else o[c] = depth == 16 ? (uint8_t)(v >> 8) : (uint8_t)v;
            }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
}

// A smooth w x h RGB JPEG; `h_samp` 2 with v 1 is 4:2:2, restart markers every `restart` MCU rows.
static void write_jpeg(const char *path, int w, int h, int h_samp, int restart, uint8_t *rgb) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    IB_ASSERT(f, "cannot write %s", path);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    c.comp_info[0].h_samp_factor = h_samp, c.comp_info[0].v_samp_factor = 1;
    c.restart_in_rows = restart;
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(40 + x * 3 % 160), p[1] = (uint8_t)(60 + y * 2 % 150), p[2] = 128;
        }
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = rgb + (size_t)c.next_scanline * w * 3;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

TEST(valid_unusual_images_decode_exactly) {
    static const struct { const char *name; int w, h, ct, depth, trns; } pngs[] = {
        {"rgb16.png", 9, 5, PNG_COLOR_TYPE_RGB, 16, 0},       {"gray2.png", 11, 3, PNG_COLOR_TYPE_GRAY, 2, 0},
        {"pal_trns.png", 6, 6, PNG_COLOR_TYPE_PALETTE, 8, 1}, {"gray_trns.png", 5, 4, PNG_COLOR_TYPE_GRAY, 8, 1},
        {"row1x7.png", 7, 1, PNG_COLOR_TYPE_RGB, 8, 0},       {"col7x1.png", 1, 7, PNG_COLOR_TYPE_RGB, 8, 0},
        {"pal2.png", 13, 2, PNG_COLOR_TYPE_PALETTE, 2, 0},
    };
    for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) {
        uint8_t want[16 * 16 * 3], *got = NULL;
        const char *p = scratch(pngs[i].name);
        write_png(p, pngs[i].w, pngs[i].h, pngs[i].ct, pngs[i].depth, pngs[i].trns, want);
        int h, w;
        ib_status st = ib_decode_file(p, &got, &h, &w);
        int ok = st == IB_OK && h == pngs[i].h && w == pngs[i].w && !memcmp(got, want, (size_t)h * w * 3);
        free(got);
        CHECK(ok, "%s: %s (%dx%d)", pngs[i].name, st ? ib_errmsg() : "pixels differ", w, h);
    }
    static const struct { const char *name; int w, h, h_samp, restart; } jpegs[] = {
        {"s422.jpg", 33, 17, 2, 0}, {"restart.jpg", 40, 40, 2, 1}, {"row1x9.jpg", 9, 1, 1, 0}, {"col1x9.jpg", 1, 9, 2, 1},
    };
    for (size_t i = 0; i < sizeof jpegs / sizeof jpegs[0]; i++) {
        uint8_t want[40 * 40 * 3], *got = NULL;
        const char *p = scratch(jpegs[i].name);
        write_jpeg(p, jpegs[i].w, jpegs[i].h, jpegs[i].h_samp, jpegs[i].restart, want);
        int h, w;
        ib_status st = ib_decode_file(p, &got, &h, &w);
        double worst = 0;
        for (int k = 0; st == IB_OK && h == jpegs[i].h && w == jpegs[i].w && k < h * w * 3; k++)
            if (abs(got[k] - want[k]) > worst) worst = abs(got[k] - want[k]);
        int ok = st == IB_OK && h == jpegs[i].h && w == jpegs[i].w && worst <= 12;
        free(got);
        CHECK(ok, "%s: %s (%dx%d, worst pixel error %g)", jpegs[i].name, st ? ib_errmsg() : "pixels differ", w, h, worst);
    }
}

// PNG's chunk CRC (ISO 3309), bit by bit: a few bytes here.
static uint32_t png_crc(const uint8_t *b, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

// A PNG's IHDR with another width and height, its CRC made right, so only the size guard can refuse it.
static const char *png_with_size(const char *src, const char *name, uint32_t w, uint32_t h) {
    size_t n;
    uint8_t *b = read_bytes(src, &n);
    uint8_t *ihdr = b + 12;   // after the signature and the chunk length: "IHDR" then the data
    for (int k = 0; k < 4; k++) ihdr[4 + k] = (uint8_t)(w >> (24 - 8 * k)), ihdr[8 + k] = (uint8_t)(h >> (24 - 8 * k));
    uint32_t crc = png_crc(ihdr, 17);
    for (int k = 0; k < 4; k++) ihdr[17 + k] = (uint8_t)(crc >> (24 - 8 * k));
    const char *out = scratch(name);
    write_bytes(out, b, n);
    free(b);
    return out;
}

// A JPEG whose SOF claims another size (the first SOF0 marker's height and width).
static const char *jpeg_with_size(const char *src, const char *name, uint16_t w, uint16_t h) {
    size_t n;
    uint8_t *b = read_bytes(src, &n);
    for (size_t i = 2; i + 9 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xC0) {
            b[i + 5] = (uint8_t)(h >> 8), b[i + 6] = (uint8_t)h, b[i + 7] = (uint8_t)(w >> 8), b[i + 8] = (uint8_t)w;
            break;
        }
    const char *out = scratch(name);
    write_bytes(out, b, n);
    free(b);
    return out;
}

TEST(broken_images_are_refused) {
    uint8_t px[40 * 40 * 3];
    const char *png = scratch("good.png"), *jpg = scratch("good.jpg");
    write_png(png, 16, 16, PNG_COLOR_TYPE_RGB, 8, 0, px);
    write_jpeg(jpg, 40, 40, 2, 0, px);
    size_t np, nj;
    free(read_bytes(png, &np)), free(read_bytes(jpg, &nj));
    const char *empty = scratch("empty.png");
    write_bytes(empty, "", 0);
    const char *text = scratch("text.jpg");
    write_bytes(text, "hello\n", 6);
    const struct { const char *path, *what; } cases[] = {
        {empty, "empty"},
        {text, "not a PNG or JPEG"},
        {variant(png, "cut.png", np / 2, np, 0), "truncated"},
        {variant(png, "cut_header.png", 20, np, 0), "truncated"},
        {variant(png, "crc_ihdr.png", np, 29, 0x01), "CRC"},    // a CRC byte of IHDR
        {variant(png, "bits_idat.png", np, 45, 0x55), "bad PNG"},   // inside the IDAT data
        {png_with_size(png, "huge.png", 100000, 100000), "too large"},
        {png_with_size(png, "zero.png", 0, 16), "bad PNG"},
        {variant(jpg, "cut.jpg", nj - 40, nj, 0), "truncated"},   // inside the scan
        {variant(jpg, "cut_header.jpg", 30, nj, 0), "bad JPEG"},
        {jpeg_with_size(jpg, "huge.jpg", 65000, 65000), "too large"},
        {jpeg_with_size(jpg, "zero.jpg", 0, 40), "bad JPEG"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *rgb = NULL;
        int h, w;
        char why[1024];
        ib_status st = ib_decode_file(cases[i].path, &rgb, &h, &w);
        free(rgb);
        CHECK(rejected(st, cases[i].path, cases[i].what, why, sizeof why) && rgb == NULL, "case %zu: %s", i, why);
    }
    // The label-mask reader: the same files, and an RGB PNG is no mask.
    uint8_t *idx = NULL;
    int h, w;
    char why[1024];
    ib_status st = ib_decode_png_indices(png, &idx, &h, &w);
    free(idx);
    CHECK(rejected(st, png, "RGB", why, sizeof why), "mask: %s", why);
    const char *cut = variant(png, "cut_mask.png", np / 2, np, 0);
    st = ib_decode_png_indices(cut, &idx, &h, &w);
    free(idx);
    CHECK(rejected(st, cut, NULL, why, sizeof why), "cut mask: %s", why);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and supernets

static const char *ARCH =
    "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"t\", \"classes\": 4, \"input\": 16,"
    " \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2}, \"head\": {\"out\": 16},"
    " \"blocks\": [{\"op\": \"ibn\", \"expand\": 2, \"out\": 8, \"stride\": 1}]}";

// A copy of the checkpoint src where dataset `name` is replaced: float64 (how 1), another shape (2), or
// the same with a NaN (3).
static const char *ckpt_variant(const char *src, const char *out_name, const char *name, int how) {
    const char *out = variant(src, out_name, (size_t)-1, (size_t)-1, 0);
    hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[8];
    int r = H5Sget_simple_extent_dims(space, dims, NULL);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    double *v = malloc(sizeof(double) * (size_t)n);
    IB_ASSERT(f >= 0 && ds >= 0 && r > 0 && v && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0,
              "cannot read %s in %s", name, out);
    H5Sclose(space), H5Dclose(ds);
    IB_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0, "cannot delete %s", name);
    if (how == 2) dims[0] = 1, n = 1;   // the first dimension cut to 1
    for (int i = 1; how == 2 && i < r; i++) n *= (hssize_t)dims[i];
    if (how == 3) v[n / 2] = NAN;
    hid_t type = how == 1 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE;
    space = H5Screate_simple(r, dims, NULL);
    ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    IB_ASSERT(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0, "cannot write %s", name);
    H5Dclose(ds), H5Sclose(space), H5Fclose(f);
    free(v);
    return out;
}

TEST(broken_checkpoints_and_supernets_are_refused) {
    ib_arch a;
    CHECK(ib_arch_parse(&a, ARCH, "test arch") == IB_OK, "%s", ib_errmsg());
    ib_net net;
    CHECK(ib_net_build(&net, &a) == IB_OK, "%s", ib_errmsg());
    ib_arch_free(&a);
    ib_net_init_weights(&net, 1);
    const char *ck = scratch("good.ckpt.h5");
    CHECK(ib_ckpt_save(&net, ck, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    const char *w0 = net.ps.t[0]->name;
    char p0[300];
    snprintf(p0, sizeof p0, "params/%s", w0);
    ib_space sp;
    CHECK(ib_space_load(&sp, project_path("search/spaces/tiny.space.json")) == IB_OK, "%s", ib_errmsg());
    ib_supernet sn;
    CHECK(ib_supernet_build(&sn, &sp, 6) == IB_OK, "%s", ib_errmsg());
    ib_space_free(&sp);
    const char *snp = scratch("good.sn.h5");
    CHECK(ib_supernet_save(&sn, snp, NULL, NULL) == IB_OK, "%s", ib_errmsg());
    ib_supernet_free(&sn);
    size_t n;
    free(read_bytes(ck, &n));
    const char *empty = scratch("empty.h5");
    write_bytes(empty, "", 0);
    const struct { const char *path, *what; int supernet; } cases[] = {
        {empty, "not an HDF5 file", 0},
        {variant(ck, "cut.h5", n / 2, n, 0), NULL, 0},
        {variant(ck, "sig.h5", n, 1, 0x20), "not an HDF5 file", 0},   // the signature
        {ckpt_variant(ck, "f64.h5", p0, 1), "float32", 0},
        {ckpt_variant(ck, "shape.h5", p0, 2), "shape", 0},
        {ckpt_variant(ck, "nan.h5", p0, 3), "nan", 0},
        {snp, "not an ibnas checkpoint", 0},
        {ck, "not an ibnas supernet", 1},
        {empty, "not an HDF5 file", 1},
        {variant(snp, "cut_sn.h5", 4000, (size_t)-1, 0), NULL, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[1024];
        ib_status st;
        if (cases[i].supernet) {
            ib_supernet s2;
            memset(&s2, 0, sizeof s2);
            st = ib_supernet_load(&s2, cases[i].path);
            if (st == IB_OK) ib_supernet_free(&s2);
        } else {
            ib_net n2;
            st = ib_ckpt_load(&n2, cases[i].path);
            if (st == IB_OK) ib_net_free(&n2);
        }
        CHECK(rejected(st, cases[i].path, cases[i].what, why, sizeof why), "case %zu: %s", i, why);
    }
    ib_net_free(&net);
}

// ---------------------------------------------------------------------------------------------
// Text formats: arch and space JSON, latency CSV, COCO annotations

static const char *text_file(const char *name, const char *text) {
    const char *p = scratch(name);
    write_bytes(p, text, strlen(text));
    return p;
}

TEST(broken_arch_space_and_latency_files_are_refused) {
    const struct { const char *name, *text, *what; int kind; } cases[] = {   // kind 0 arch, 1 space, 2 latency CSV
        {"empty.arch.json", "", NULL, 0},
        {"dup.arch.json", "{\"format\": \"ibnas-arch\", \"format\": \"ibnas-arch\", \"version\": 1}", "duplicate", 0},
        {"cut.arch.json", "{\"format\": \"ibnas-arch\", \"version\": 1, \"blocks\": [{\"op\": ", ":1:", 0},
        {"huge.arch.json", "{\"format\": \"ibnas-arch\", \"version\": 1, \"classes\": 10, \"input\": 99999999,"
                           " \"blocks\": [{\"op\": \"ibn\", \"out\": 8}]}", "input", 0},
        {"empty.space.json", "", NULL, 1},
        {"dup.space.json", "{\"format\": \"ibnas-space\", \"version\": 1, \"version\": 2}", "duplicate", 1},
        {"nochoice.space.json", "{\"format\": \"ibnas-space\", \"version\": 1, \"name\": \"x\", \"input\": 32,"
                                " \"classes\": 4, \"stem\": {\"out\": 8, \"kernel\": 3, \"stride\": 2},"
                                " \"stages\": [{\"out\": 8, \"stride\": 1, \"layers\": 1, \"op\": []}],"
                                " \"head\": {\"out\": 16}}", "op", 1},
        {"array.space.json", "[1, 2, 3]", NULL, 1},
        {"empty.csv", "", "header", 2},
        {"badrow.csv", "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,x,1,0,0,0.1\n",
         ":2:", 2},
        {"nan.csv", "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,4,1,0,0,nan\n", "ms",
         2},
        {"short.csv", "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8\n", "too few", 2},
        {"dup.csv", "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms\nibn,8,8,16,16,1,3,4,1,0,0,0.1\n"
                    "ibn,8,8,16,16,1,3,4,1,0,0,0.2\n", "twice", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = text_file(cases[i].name, cases[i].text);
        ib_status st;
        if (cases[i].kind == 0) {
            ib_arch a;
            memset(&a, 0, sizeof a);
            st = ib_arch_load(&a, p);
            if (st == IB_OK) ib_arch_free(&a);
        } else if (cases[i].kind == 1) {
            ib_space s;
            memset(&s, 0, sizeof s);
            st = ib_space_load(&s, p);
            if (st == IB_OK) ib_space_free(&s);
        } else {
            ib_lut *t = NULL;
            st = ib_lut_load(&t, p);
            ib_lut_free(t);
        }
        char why[1024];
        CHECK(rejected(st, p, cases[i].what, why, sizeof why), "%s: %s", cases[i].name, why);
    }
    // A NUL byte in a latency table.
    const char *nul = scratch("nul.csv");
    write_bytes(nul, "op,cin\0,cout\n", 13);
    ib_lut *t = NULL;
    ib_status st = ib_lut_load(&t, nul);
    ib_lut_free(t);
    char why[1024];
    CHECK(rejected(st, nul, "NUL", why, sizeof why), "%s", why);
}

// Opens root as a dataset of `format` and closes it again: the status, and its size in *size.
static ib_status open_root(const char *root, ib_ds_format format, int64_t *size) {
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = format;
    ib_dataset *ds = NULL;
    ib_status st = ib_dataset_open(&ds, root, &o);
    *size = st ? 0 : ib_dataset_size(ds);
    if (!st) ib_dataset_close(ds);
    return st;
}

// A COCO root (annotations/instances_train.json, images/train/a.png) with the given JSON.
static const char *coco_root(const char *name, const char *json) {
    const char *root = scratch(name);
    char p[700];
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/annotations", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/images", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/images/train", root), mkdir(p, 0755);
    uint8_t px[8 * 8 * 3];
    snprintf(p, sizeof p, "%s/images/train/a.png", root);
    write_png(p, 8, 8, PNG_COLOR_TYPE_RGB, 8, 0, px);
    snprintf(p, sizeof p, "%s/annotations/instances_train.json", root);
    write_bytes(p, json, strlen(json));
    return root;
}

TEST(broken_coco_annotations_are_refused) {
#define IMG "\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 8, \"height\": 8}]"
#define CAT "\"categories\": [{\"id\": 3, \"name\": \"cat\"}]"
    const struct { const char *name, *json, *what; } cases[] = {
        {"coco_ok", "{" IMG ", " CAT ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4]}]}",
         NULL},
        {"coco_cat", "{" IMG ", " CAT ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 9, \"bbox\": [1, 1, 4, 4]}]}",
         "category_id 9"},
        {"coco_img", "{" IMG ", " CAT ", \"annotations\": [{\"id\": 1, \"image_id\": 7, \"category_id\": 3, \"bbox\": [1, 1, 4, 4]}]}",
         "image_id 7"},
        {"coco_dup", "{" IMG ", " IMG ", " CAT ", \"annotations\": []}", "duplicate"},
        {"coco_syntax", "{" IMG ", " CAT ", \"annotations\": [}", "malformed JSON"},
        {"coco_bbox", "{" IMG ", " CAT ", \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1]}]}",
         "bbox"},
        {"coco_empty", "", "malformed JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *root = coco_root(cases[i].name, cases[i].json);
        int64_t size;
        ib_status st = open_root(root, IB_DS_COCO, &size);
        if (i == 0) {
            CHECK(st == IB_OK && size == 1, "the good root: %s", st ? ib_errmsg() : "not one image");
            continue;
        }
        char why[1024];
        CHECK(rejected(st, root, cases[i].what, why, sizeof why), "%s: %s", cases[i].name, why);
    }
#undef IMG
#undef CAT
}

// A YOLO root (names.txt of three classes, images/train/a.png, labels/train/a.txt holding `label`).
static const char *yolo_root(const char *name, const char *label) {
    const char *root = scratch(name);
    char p[700];
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/images", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/images/train", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/labels", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/labels/train", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/names.txt", root);
    write_bytes(p, "cat\ndog\nbird\n", 13);
    uint8_t px[8 * 8 * 3];
    snprintf(p, sizeof p, "%s/images/train/a.png", root);
    write_png(p, 8, 8, PNG_COLOR_TYPE_RGB, 8, 0, px);
    snprintf(p, sizeof p, "%s/labels/train/a.txt", root);
    write_bytes(p, label, strlen(label));
    return root;
}

TEST(broken_yolo_labels_are_refused) {
    const struct { const char *label, *what; } cases[] = {
        {"0 0.5 0.5 0.2 0.2\n2 0.1 0.9 0.2 0.2\n", NULL},   // good
        {"0 0.5 abc 0.2 0.2\n", "a.txt:1: expected"},
        {"0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n", "a.txt:2: class id 7"},
        {"-1 0.5 0.5 0.2 0.2\n", "a.txt:1: class id -1"},
        {"1.5 0.5 0.5 0.2 0.2\n", "a.txt:1: expected"},
        {"0 1.5 0.5 0.2 0.2\n", "a.txt:1: cx 1.5 outside [0, 1]"},
        {"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 -0.2 0.2\n", "a.txt:2: w -0.2 outside"},
        {"0 0.5 0.5 0.2 40\n", "a.txt:1: h 40 outside"},
        {"0 0.5 nan 0.2 0.2\n", "a.txt:1: expected"},
        {"0 0.5 0.5 0.2\n", "a.txt:1: expected"},
        {"0 0.5 0.5 0.2 0.2 0.9\n", "a.txt:1: expected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32], label[700];
        snprintf(name, sizeof name, "yolo%zu", i);
        const char *root = yolo_root(name, cases[i].label);
        snprintf(label, sizeof label, "%s/labels/train/a.txt", root);
        int64_t size;
        ib_status st = open_root(root, IB_DS_YOLO, &size);
        if (i == 0) {
            CHECK(st == IB_OK && size == 1, "the good root: %s", st ? ib_errmsg() : "not one image");
            continue;
        }
        char why[1024];
        CHECK(rejected(st, label, cases[i].what, why, sizeof why), "case %zu (%s): %s", i, cases[i].label, why);
    }
}

// COCO results (`ibnas coco-eval`): one ground truth, detections broken in each way.
TEST(broken_coco_results_are_refused) {
    const char *gt = text_file("res_gt.json",
                               "{\"images\": [{\"id\": 1}, {\"id\": 2}], \"categories\": [{\"id\": 3}], \"annotations\": "
                               "[{\"id\": 1, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"area\": 16}]}");
    const struct { const char *json, *what; } cases[] = {
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]", NULL},   // good
        {"[{\"image_id\": \"1\", \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]",
         "[0]: \"image_id\" is a string, expected an integer"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9},"
         " {\"image_id\": 1.5, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]", "[1]: \"image_id\" is 1.5"},
        {"[{\"image_id\": 1e30, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]", "\"image_id\" is 1e+30"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": \"1 1 4 4\", \"score\": 0.9}]", "\"bbox\" is a string"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, \"4\", 4], \"score\": 0.9}]", "\"bbox\"[2] is a string"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4], \"score\": 0.9}]", "\"bbox\" is a list of other"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": null}]", "\"score\" is null"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, 4, 4]}]", "\"score\" is missing"},
        {"[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 1, -4, 4], \"score\": 0.9}]", "must not be negative"},
        {"[{\"image_id\": 99, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]", "image 99"},
        {"[7]", "[0]: \"image_id\" is not there"},
        {"{\"image_id\": 1}", "expected a list of detections"},
        {"[{\"image_id\": 1, \"image_id\": 2, \"category_id\": 3, \"bbox\": [1, 1, 4, 4], \"score\": 0.9}]", "duplicate"},
        {"", NULL},   // an empty file: jansson's own words, with the file name
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "res%zu.json", i);
        const char *dets = text_file(name, cases[i].json);
        double stats[IB_COCO_NSTATS];
        ib_status st = ib_coco_eval(gt, dets, stats);
        if (i == 0) {
            CHECK(st == IB_OK && stats[0] > 0.99, "the good results: %s (AP %g)", st ? ib_errmsg() : "", stats[0]);
            continue;
        }
        char why[1024];
        CHECK(rejected(st, dets, cases[i].what, why, sizeof why), "case %zu: %s", i, why);
    }
    // The ground truth is read with the same checks.
    const char *bad_gt = text_file("res_bad_gt.json", "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 3}], "
                                                      "\"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 3, "
                                                      "\"bbox\": [1, 1, 4, -4], \"area\": 16}]}");
    double stats[IB_COCO_NSTATS];
    char why[1024];
    ib_status st = ib_coco_eval(bad_gt, scratch("res0.json"), stats);
    CHECK(rejected(st, bad_gt, "annotations[0]: \"bbox\" has width 4 and height -4", why, sizeof why), "%s", why);
}

// A segmentation root: classes.txt (two classes and the ignore id 2), train/<name>.png images and
// trainannot/<name>.png masks of the given sizes and pixel value (-1: no mask).
static const char *seg_root(const char *name, int img_h, int mask_h, int value, int with_b) {
    const char *root = scratch(name);
    char p[700];
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/train", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/trainannot", root), mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/classes.txt", root);
    write_bytes(p, "0 sky\n1 road\n2 void\n", 20);
    uint8_t px[8 * 8 * 3], idx[8 * 8], pal[16 * 3] = {0};
    for (int k = 0; k < 16 * 3; k++) pal[k] = (uint8_t)(k * 5);
    for (const char *n = "a"; n; n = with_b && n[0] == 'a' ? "b" : NULL) {
        snprintf(p, sizeof p, "%s/train/%s.png", root, n);
        write_png(p, 8, img_h, PNG_COLOR_TYPE_RGB, 8, 0, px);
        if (n[0] == 'b') continue;   // b has no mask
        memset(idx, 0, sizeof idx);
        idx[3 * 8 + 5] = (uint8_t)value;   // pixel (5, 3)
        snprintf(p, sizeof p, "%s/trainannot/%s.png", root, n);
        IB_ASSERT(ib_png_write_indexed(p, idx, mask_h, 8, pal, 16) == IB_OK, "%s", ib_errmsg());
    }
    return root;
}

TEST(broken_segmentation_folders_are_refused) {
    const struct { int img_h, mask_h, value, with_b; const char *named, *what; } cases[] = {
        {8, 8, 1, 0, NULL, NULL},                                     // good (1 is a class)
        {8, 8, 2, 0, NULL, NULL},                                     // good (2 is the ignore id)
        {8, 6, 0, 0, "trainannot/a.png", "the mask is 8x6 but its image"},
        {8, 8, 9, 0, "trainannot/a.png", "pixel (5, 3) is 9, not a class id 0..1"},
        {8, 8, 1, 1, "train/b.png", "no mask"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32], named[700];
        snprintf(name, sizeof name, "seg%zu", i);
        const char *root = seg_root(name, cases[i].img_h, cases[i].mask_h, cases[i].value, cases[i].with_b);
        ib_ds_opts o;
        memset(&o, 0, sizeof o);
        o.format = IB_DS_SEGPAIRS;
        ib_dataset *ds = NULL;
        ib_status st = ib_dataset_open(&ds, root, &o);
        ib_sample smp;
        memset(&smp, 0, sizeof smp);
        if (st == IB_OK) {   // sizes and values are known once the pair is decoded
            st = ib_dataset_get(ds, 0, &smp);
            if (st == IB_OK) ib_sample_free(&smp);
            ib_dataset_close(ds);
        }
        if (!cases[i].what) {
            CHECK(st == IB_OK, "case %zu, a good root: %s", i, ib_errmsg());
            continue;
        }
        snprintf(named, sizeof named, "%s/%s", root, cases[i].named);
        char why[1024];
        CHECK(rejected(st, named, cases[i].what, why, sizeof why), "case %zu: %s", i, why);
    }
}

// ---------------------------------------------------------------------------------------------
// Through the command: a non-zero exit and the file named on stderr, for each kind of file.

TEST(cli_reports_bad_files) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    const char *bad_h5 = variant(project_path("search/spaces/tiny.space.json"), "notes.h5", (size_t)-1, (size_t)-1, 0);
    const char *bad_space = text_file("cli_dup.space.json", "{\"format\": \"ibnas-space\", \"format\": 1}");
    const char *bad_lut = text_file("cli_bad.csv", "op,cin\n");
    const char *bad_arch = text_file("cli_bad.arch.json", "{\"format\": \"ibnas-arch\", \"version\": 1, \"blocks\": 3}");
    char cmds[5][2048];
    snprintf(cmds[0], sizeof cmds[0], "%s infer --model %s --input %s --output %s", bin, bad_h5, bad_h5, scratch("y.h5"));
    snprintf(cmds[1], sizeof cmds[1], "%s space count --space %s", bin, bad_space);
    snprintf(cmds[2], sizeof cmds[2], "%s latency predict --lut %s --arch mobilenetv2", bin, bad_lut);
    snprintf(cmds[3], sizeof cmds[3], "%s eval --model %s --data %s", bin, bad_h5, bad_h5);
    snprintf(cmds[4], sizeof cmds[4], "%s space check --space %s --arch %s", bin,
             project_path("search/spaces/tiny.space.json"), bad_arch);
    const char *named[5] = {bad_h5, bad_space, bad_lut, bad_h5, bad_arch};
    for (int i = 0; i < 5; i++) {
        char *err = NULL;
        int rc = test_run(cmds[i], NULL, &err);
        int ok = rc >= 1 && rc < 128 && strstr(err, named[i]);
        CHECK(ok, "'%s': exit %d, stderr: %s", cmds[i], rc, err);
        free(err);
    }
}

// The new readers through the command: exit 1, the bad file named, and no output written (a pack of a
// root with a bad label or mask leaves neither PACK.h5 nor PACK.h5.tmp).
TEST(cli_bad_labels_exit_1_and_write_nothing) {
    const char *bin = test_ibnas_bin();
    if (access(bin, X_OK) != 0) SKIP("%s not built", bin);
    char yolo_label[700], seg_mask[700], cmd[2048];
    const char *yolo = yolo_root("cli_yolo", "0 0.5 0.5 0.2 0.2\n1 0.5 1.25 0.2 0.2\n");
    snprintf(yolo_label, sizeof yolo_label, "%s/labels/train/a.txt:2", yolo);
    const char *seg = seg_root("cli_seg", 8, 8, 9, 0);
    snprintf(seg_mask, sizeof seg_mask, "%s/trainannot/a.png", seg);
    const char *gt = text_file("cli_gt.json", "{\"images\": [{\"id\": 1}], \"categories\": [{\"id\": 3}], \"annotations\": []}");
    const char *dets = text_file("cli_dets.json", "[{\"image_id\": 1, \"category_id\": 3, \"bbox\": [0, 0, -1, 2], \"score\": 1}]");
    const struct { const char *format, *src, *named; } packs[] = {{"yolo", yolo, yolo_label}, {"segpairs", seg, seg_mask}};
    for (int i = 0; i < 2; i++) {
        const char *out = scratch(i ? "cli_seg_pack.h5" : "cli_yolo_pack.h5");
        char tmp[600], *err = NULL;
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        snprintf(cmd, sizeof cmd, "%s pack --format %s %s --size 16 --out %s", bin, packs[i].format, packs[i].src, out);
        int rc = test_run(cmd, NULL, &err);
        int ok = rc == 1 && strstr(err, packs[i].named);
        CHECK(ok, "'%s': exit %d, stderr must name %s: %s", cmd, rc, packs[i].named, err);
        free(err);
        CHECK(access(out, F_OK) != 0 && access(tmp, F_OK) != 0, "'%s' left %s or its .tmp", cmd, out);
    }
    char *err = NULL;
    snprintf(cmd, sizeof cmd, "%s coco-eval %s %s", bin, gt, dets);
    int rc = test_run(cmd, NULL, &err);
    int ok = rc == 1 && strstr(err, dets) && strstr(err, "negative");
    CHECK(ok, "'%s': exit %d: %s", cmd, rc, err);
    free(err);
}
