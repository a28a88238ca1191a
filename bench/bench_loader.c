// Loader throughput: Tiny ImageNet's 64x64 JPEGs through the whole input path (decode, pad-crop 4,
// horizontal flip, normalise into batches of 64), in images per second with 1 and 2 worker threads.
// It must stay far above training throughput, or training waits on data. First, the synthetic scenes'
// rendering rate on one thread (the demo's and the tests' data, made on the fly).
// Usage: bench_loader [--data DIR] [--batches N] [--json] [--json-out FILE]   (other flags, e.g. --threads,
// are ignored; --json-out writes the JSON object to FILE and still prints the table)
#include "data/data.h"
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *find_data(const char *given) {
    static const char *candidates[] = {"../shared/data/tiny-imagenet-200", "/work/shared/data/tiny-imagenet-200"};
    struct stat st;
    if (given) return stat(given, &st) == 0 ? given : NULL;
    for (int i = 0; i < 2; i++)
        if (stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode)) return candidates[i];
    return NULL;
}

// CPU seconds used by the whole process: with other jobs on the machine, wall-clock rates swing, the
// CPU cost per image much less.
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Images per second over `batches` batches of one epoch (the consumer does nothing with them).
static ib_status run(ib_dataset *ds, int workers, int64_t batches, double *ips, double *us_cpu, int64_t *images) {
    ib_loader_opts o;
    ib_loader_opts_default(&o, 64, 64);
    o.batch_size = 64;
    o.drop_last = 1;
    o.workers = workers;
    o.seed = 1;
    o.aug.crop = IB_CROP_PAD;
    o.aug.pad = 4;
    o.aug.hflip_p = 0.5f;
    ib_loader *l;
    ib_status st = ib_loader_open(&l, ds, &o);
    if (st) return st;
    double t0 = ib_time_s(), c0 = cpu_s();
    ib_loader_start_epoch(l, 0);
    const ib_batch *b;
    int64_t n = 0;
    for (int64_t k = 0; k < batches; k++) {
        if ((st = ib_loader_next(l, &b)) || !b) break;
        n += b->n;
    }
    double dt = ib_time_s() - t0;
    ib_loader_close(l);
    *us_cpu = 1e6 * (cpu_s() - c0) / (double)(n ? n : 1);
    *ips = n / dt;
    *images = n;
    return st;
}

int main(int argc, char **argv) {
    const char *given = NULL;
    int64_t batches = 300;
    int json = 0;
    const char *json_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) given = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--json-out") && i + 1 < argc) json_out = argv[++i];
    }
    double t_synth = ib_time_s();
    enum { N_SYNTH = 1000 };
    for (int i = 0; i < N_SYNTH; i++) {
        ib_sample s;
        ib_synth_render(1, i, 64, &s);
        ib_sample_free(&s);
    }
    double synth_ips = N_SYNTH / (ib_time_s() - t_synth);
    if (!json) printf("bench_loader: synthetic scenes, 64x64, 1 thread  %8.0f img/s\n", synth_ips);
    const char *dir = find_data(given);
    if (!dir) {
        printf("bench_loader: skipped (no Tiny ImageNet at %s)\n", given ? given : "../shared/data/tiny-imagenet-200");
        return 0;
    }
    ib_dataset *ds;
    ib_ds_opts dopts = {.format = IB_DS_TINYIMAGENET, .split = "train"};
    ib_status st = ib_dataset_open(&ds, dir, &dopts);
    if (st) {
        fprintf(stderr, "bench_loader: %s\n", ib_errmsg());
        return 1;
    }
    int64_t max_batches = ib_dataset_size(ds) / 64;
    if (batches < 1 || batches > max_batches) batches = max_batches;
    // Decoding alone on this thread, for scale; it also brings the files into the page cache.
    double t0 = ib_time_s(), c0 = cpu_s();
    int64_t n_dec = batches * 64;
    for (int64_t i = 0; i < n_dec && !st; i++) {
        ib_sample s;
        st = ib_dataset_get(ds, i * (ib_dataset_size(ds) / n_dec), &s);
        ib_sample_free(&s);
    }
    double dec_ips = n_dec / (ib_time_s() - t0), dec_us = 1e6 * (cpu_s() - c0) / (double)n_dec;
    double ips[2] = {0, 0}, us[2] = {0, 0};
    int64_t images[2] = {0, 0};
    for (int w = 1; w <= 2 && !st; w++) st = run(ds, w, batches, &ips[w - 1], &us[w - 1], &images[w - 1]);
    if (st) {
        fprintf(stderr, "bench_loader: %s\n", ib_errmsg());
        ib_dataset_close(ds);
        return 1;
    }
    for (int pass = 0; pass < 2; pass++) {   // the JSON object to stdout (--json), then to --json-out
        FILE *jf = pass == 0 ? (json ? stdout : NULL) : (json_out ? fopen(json_out, "w") : NULL);
        if (!jf) {
            if (pass == 1 && json_out) fprintf(stderr, "bench_loader: cannot write %s\n", json_out);
            continue;
        }
        fprintf(jf, "{\"bench\":\"loader\",\"data\":\"%s\",\"images\":%lld,\"batch\":64,\"size\":64,"
                    "\"augment\":\"pad4-crop64+hflip\",\"decode_only_ips\":%.0f,\"workers_1_ips\":%.0f,"
                    "\"workers_2_ips\":%.0f,\"decode_cpu_us\":%.1f,\"workers_1_cpu_us\":%.1f,"
                    "\"workers_2_cpu_us\":%.1f,\"synth_ips\":%.0f}\n",
                dir, (long long)images[0], dec_ips, ips[0], ips[1], dec_us, us[0], us[1], synth_ips);
        if (jf != stdout) fclose(jf);
    }
    if (!json) {
        printf("bench_loader: %s, %lld images of 64x64 JPEG, pad-crop 4 + flip, batch 64\n", dir, (long long)images[0]);
        printf("  decode only, 1 thread  %8.0f img/s  %6.1f us CPU/img\n", dec_ips, dec_us);
        printf("  loader, 1 worker       %8.0f img/s  %6.1f us CPU/img\n", ips[0], us[0]);
        printf("  loader, 2 workers      %8.0f img/s  %6.1f us CPU/img\n", ips[1], us[1]);
    }
    ib_dataset_close(ds);
    return 0;
}
