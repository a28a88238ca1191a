// The test runner and the helpers every test uses (tolerances, fills, gradient checks, references).
#include "tests/test.h"

#include <jansson.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 512
static struct { const char *name; void (*fn)(void); } cases[MAX_CASES];
static int n_cases;
static int case_state;   // 0 running/passed, 1 failed, 2 skipped
static char case_msg[2048];

void ib_test_register(const char *name, void (*fn)(void)) {
    IB_ASSERT(n_cases < MAX_CASES, "too many test cases");
    cases[n_cases].name = name;
    cases[n_cases].fn = fn;
    n_cases++;
}

void ib_test_fail(const char *file, int line, const char *fmt, ...) {
    if (case_state == 1) return;   // the first failure is the one reported
    int k = snprintf(case_msg, sizeof case_msg, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(case_msg + k, sizeof case_msg - (size_t)k, fmt, ap);
    va_end(ap);
    case_state = 1;
}

void ib_test_skip(const char *fmt, ...) {
    if (case_state == 1) return;   // a SKIP after a failure keeps the failure and its message
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(case_msg, sizeof case_msg, fmt, ap);
    va_end(ap);
    case_state = 2;
}

int ib_test_failed(void) { return case_state != 0; }

int main(int argc, char **argv) {
    // Tests choose their SIMD version themselves; one named in the caller's environment would change
    // what every test (and every ibnas it starts) runs.
    unsetenv("IBNAS_SIMD");
    ib_set_threads(2);
    int failed = 0;
    for (int i = 0; i < n_cases; i++) {
        if (argc > 1 && !strstr(cases[i].name, argv[1])) continue;
        case_state = 0;
        case_msg[0] = 0;
        double t0 = ib_time_s();
        cases[i].fn();
        double dt = ib_time_s() - t0;
        if (case_state == 0) printf("PASS %s (%.2fs)\n", cases[i].name, dt);
        else if (case_state == 2) printf("SKIP %s: %s\n", cases[i].name, case_msg);
        else {
            printf("FAIL %s: %s\n", cases[i].name, case_msg);
            failed++;
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   // NaN propagates
    }
    return m;
}

void fill_normal(ib_tensor *t, uint64_t seed, float std) {
    ib_rng r;
    ib_rng_seed(&r, seed, 7);
    ib_rng_fill_normal(&r, t->data, ib_numel(t), 0.0f, std);
}

void fill_uniform(ib_tensor *t, uint64_t seed, float lo, float hi) {
    ib_rng r;
    ib_rng_seed(&r, seed, 11);
    ib_rng_fill_uniform(&r, t->data, ib_numel(t), lo, hi);
}

// ---------------------------------------------------------------------------------------------
// Gradient check

static double loss_of(ib_ctx *ctx, gc_forward fwd, void *user, int n_in, ib_tensor *const *in, const float *r,
                      int64_t *n_out) {
    ib_ctx_reset(ctx);
    int rec = ctx->recording;
    ctx->recording = 0;
    ib_tensor *leaves[IB_MAX_INPUTS];
    for (int i = 0; i < n_in; i++) {
        leaves[i] = ib_tensor_like(ctx, in[i]);
        memcpy(leaves[i]->data, in[i]->data, sizeof(float) * (size_t)ib_numel(in[i]));
    }
    ib_tensor *out = fwd(ctx, leaves, user);
    ctx->recording = rec;
    *n_out = ib_numel(out);
    double s = 0;
    for (int64_t j = 0; j < *n_out; j++) s += (double)out->data[j] * (r ? r[j] : 0.0);
    return s;
}

int gradcheck(gc_forward fwd, void *user, int n_in, ib_tensor *const *in, const int *check, gc_opts opt,
              char *msg, size_t msgn) {
    if (opt.h <= 0) opt.h = 1e-2;
    if (opt.tol <= 0) opt.tol = 1e-3;
    IB_ASSERT(n_in <= IB_MAX_INPUTS, "gradcheck: too many inputs");
    ib_ctx *ctx = ib_ctx_new();
    int ok = 1;

    // Analytic gradients.
    ib_tensor *leaves[IB_MAX_INPUTS];
    for (int i = 0; i < n_in; i++) {
        leaves[i] = ib_tensor_like(ctx, in[i]);
        memcpy(leaves[i]->data, in[i]->data, sizeof(float) * (size_t)ib_numel(in[i]));
        leaves[i]->requires_grad = check[i];
    }
    ib_tensor *out = fwd(ctx, leaves, user);
    int64_t n_out = ib_numel(out);
    float *r = malloc(sizeof(float) * (size_t)n_out);
    ib_rng rng;
    ib_rng_seed(&rng, 1234, 1);
    ib_rng_fill_normal(&rng, r, n_out, 0, 1);
    for (int64_t j = 0; j < n_out; j++)
        if (!isfinite(out->data[j])) {
            snprintf(msg, msgn, "forward output has a non-finite value at %lld", (long long)j);
            ok = 0;
            goto done;
        }
    int any = 0;
    for (int i = 0; i < n_in; i++) any |= check[i];
    if (any && !out->requires_grad) {
        snprintf(msg, msgn, "output does not require grad: the op recorded nothing");
        ok = 0;
        goto done;
    }
    ib_backward(ctx, out, r);
    float *analytic[IB_MAX_INPUTS] = {0};
    for (int i = 0; i < n_in; i++) {
        if (!check[i]) continue;
        int64_t n = ib_numel(in[i]);
        analytic[i] = calloc((size_t)n, sizeof(float));
        if (leaves[i]->grad) memcpy(analytic[i], leaves[i]->grad, sizeof(float) * (size_t)n);
    }

    // Numeric gradients, element by element.
    for (int i = 0; i < n_in && ok; i++) {
        if (!check[i]) continue;
        int64_t n = ib_numel(in[i]);
        int64_t step = (opt.max_elems > 0 && n > opt.max_elems) ? (n + opt.max_elems - 1) / opt.max_elems : 1;
        int64_t n_checked = (n + step - 1) / step;
        double *numeric = malloc(sizeof(double) * (size_t)n_checked), num2 = 0;
        IB_ASSERT(numeric, "out of memory");
        for (int64_t k = 0; k < n_checked; k++) {
            int64_t j = k * step;
            float orig = in[i]->data[j];
            int64_t m;
            in[i]->data[j] = orig + (float)opt.h;
            double lp = loss_of(ctx, fwd, user, n_in, in, r, &m);
            in[i]->data[j] = orig - (float)opt.h;
            double lm = loss_of(ctx, fwd, user, n_in, in, r, &m);
            in[i]->data[j] = orig;
            double hp = (double)(orig + (float)opt.h) - (double)(orig - (float)opt.h);   // the step really taken
            numeric[k] = (lp - lm) / hp;
            double a = analytic[i][j];
            if (!isfinite(numeric[k]) || !isfinite(a)) {
                snprintf(msg, msgn, "input %d element %lld: non-finite gradient (analytic %g, numeric %g)", i,
                         (long long)j, a, numeric[k]);
                ok = 0;
                break;
            }
            num2 += numeric[k] * numeric[k];
        }
        // Each element on its own: its error over its own size, or over the input's RMS gradient where the
        // element is smaller than that (a near-zero gradient is all finite-difference noise). One element
        // of hundreds that is 20% wrong fails, which a whole-tensor norm would hide.
        double rms = fmax(sqrt(num2 / (double)n_checked), 1e-6), worst_e = -1;
        int64_t worst = -1;
        for (int64_t k = 0; k < n_checked && ok; k++) {
            double a = analytic[i][k * step], e = fabs(a - numeric[k]) / fmax(fabs(numeric[k]), rms);
            if (e > worst_e) worst_e = e, worst = k;
        }
        if (getenv("IBNAS_GRADCHECK_REPORT")) fprintf(stderr, "gradcheck: input %d worst %.3g (tol %.3g)\n", i, worst_e, opt.tol);
        if (ok && worst_e > opt.tol) {
            snprintf(msg, msgn, "input %d element %lld: error %.3g > %.3g (analytic %.6g, numeric %.6g, input RMS %.3g)", i,
                     (long long)(worst * step), worst_e, opt.tol, analytic[i][worst * step], numeric[worst], rms);
            ok = 0;
        }
        free(numeric);
    }
    for (int i = 0; i < n_in; i++) free(analytic[i]);
done:
    free(r);
    ib_ctx_free(ctx);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// References

const char *project_path(const char *rel) {
    static char bufs[8][4096];
    static int k;
    char *buf = bufs[k++ % 8];
    snprintf(buf, 4096, "%s", rel);
    if (access(buf, R_OK) == 0) return buf;
    // From the binary's folder (build/tests or build/<variant>/tests) up to the project root.
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 5; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash) break;
            *slash = 0;
            snprintf(buf, 4096, "%s/%s", exe, rel);
            if (access(buf, R_OK) == 0) return buf;
        }
    }
    snprintf(buf, 4096, "%s", rel);
    return buf;
}

const char *ref_path(const char *name) {
    char rel[1024];
    snprintf(rel, sizeof rel, "tests/ref/%s", name);
    return project_path(rel);
}

int ref_compare(ib_h5 *f, const char *name, const ib_tensor *t, double tol, char *msg, size_t msgn) {
    int64_t n = ib_numel(t);
    float *ref = malloc(sizeof(float) * (size_t)(n ? n : 1));
    ib_status s = ib_h5_read_f32(f, name, ref, n);
    if (s) {
        snprintf(msg, msgn, "%s", ib_errmsg());
        free(ref);
        return 0;
    }
    ib_tensor tmp = *t;
    IB_ASSERT(ib_is_contiguous(&tmp), "ref_compare: contiguous tensors");
    double e = rel_err(t->data, ref, n);
    free(ref);
    if (!(e <= tol)) {
        snprintf(msg, msgn, "%s: relative error %.3g > %.3g", name, e, tol);
        return 0;
    }
    return 1;
}

const char *shared_dir(void) {
    static char buf[4096];
    const char *env = getenv("IBNAS_SHARED");
    if (env && access(env, R_OK) == 0) return env;
    snprintf(buf, sizeof buf, "../shared");
    if (access(buf, R_OK) == 0) return buf;
    return NULL;
}

static char tmp_dir[256];

static void remove_tmp_dir(void) {
    if (!tmp_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);   // the name came from mkdtemp: no quotes in it
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
}

const char *test_tmpdir(void) {
    if (!tmp_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_dir, sizeof tmp_dir, "%s/ibnas_test_XXXXXX", base && base[0] ? base : "/tmp");
        IB_ASSERT(mkdtemp(tmp_dir), "cannot make a scratch folder %s", tmp_dir);
        atexit(remove_tmp_dir);
    }
    return tmp_dir;
}

const char *test_ibnas_bin(void) {
    const char *e = getenv("IBNAS");
    return e && e[0] ? e : "build/ibnas";
}

char *test_read_file(const char *path) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    IB_ASSERT(buf, "out of memory");
    FILE *f = fopen(path, "r");
    for (size_t got = 1; f && got;) {   // the whole file, however long
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            IB_ASSERT(buf, "out of memory");
        }
        n += got = fread(buf + n, 1, cap - 1 - n, f);
    }
    if (f) fclose(f);
    buf[n] = 0;
    return buf;
}

int test_same_array(const char *a, const char *b, const char *name) {
    float *x = NULL, *y = NULL;
    int nx, ny;
    int64_t sx[IB_ARRAY_MAX_DIMS], sy[IB_ARRAY_MAX_DIMS];
    IB_ASSERT(!ib_array_load(a, name, &x, &nx, sx) && !ib_array_load(b, name, &y, &ny, sy), "%s", ib_errmsg());
    int64_t n = 1;
    for (int i = 0; i < nx; i++) n *= sx[i];
    int same = nx == ny && !memcmp(sx, sy, sizeof(int64_t) * (size_t)nx) && !memcmp(x, y, sizeof(float) * (size_t)n);
    free(x), free(y);
    return same;
}

double test_budget_between(const char *space, const char *lut, int res, char *smallest, char *largest, size_t n) {
    return test_budget_between_head(space, lut, res, NULL, smallest, largest, n);
}

double test_budget_between_head(const char *space, const char *lut, int res, const ib_latency_head *head, char *smallest,
                                char *largest, size_t n) {
    ib_space *s;
    ib_lut *t;
    IB_ASSERT(!ib_space_open(&s, space) && !ib_lut_load(&t, lut), "%s", ib_errmsg());
    double ms[2];
    for (int k = 0; k < 2; k++) {
        char *arch, *path = k ? largest : smallest;
        IB_ASSERT(!ib_space_sample_arch(s, k ? "largest" : "smallest", 0, 0, &arch), "%s", ib_errmsg());
        ib_latency_prediction p;
        IB_ASSERT(!ib_lut_predict_detail_head(t, arch, head, res, &p), "%s", ib_errmsg());
        ms[k] = p.ms;
        ib_latency_prediction_free(&p);
        if (path) {
            snprintf(path, n, "%s/%s.arch.json", test_tmpdir(), k ? "largest" : "smallest");
            FILE *f = fopen(path, "w");
            IB_ASSERT(f && fputs(arch, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
        }
        free(arch);
    }
    IB_ASSERT(ms[1] > ms[0], "largest %g ms, smallest %g ms", ms[1], ms[0]);
    ib_lut_free(t);
    ib_space_close(s);
    return 0.5 * (ms[0] + ms[1]);
}

const char *test_scratch(const char *name) {
    static char bufs[16][512];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 512, "%s/%s", test_tmpdir(), name);
    return b;
}

int test_run(const char *cmd, char **out, char **err) {
    static int k;
    char of[512], ef[512], full[4096];
    k++;
    snprintf(of, sizeof of, "%s/run%d.out", test_tmpdir(), k);
    snprintf(ef, sizeof ef, "%s/run%d.err", test_tmpdir(), k);
    snprintf(full, sizeof full, "%s > %s 2> %s", cmd, of, ef);
    int rc = system(full);
    if (out) *out = test_read_file(of);
    if (err) *err = test_read_file(ef);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int test_run_limited(char *const argv[], long long fsize, char **err) {
    static int k;
    char ef[512];
    snprintf(ef, sizeof ef, "%s/limited%d.err", test_tmpdir(), ++k);
    fflush(stdout);
    pid_t pid = fork();
    IB_ASSERT(pid >= 0, "fork failed");
    if (pid == 0) {
        struct rlimit rl = {(rlim_t)fsize, (rlim_t)fsize};
        if (fsize >= 0 && setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(97);
        signal(SIGXFSZ, SIG_IGN);   // ignored across exec: the write fails instead of killing the process
        if (!freopen(ef, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execv(argv[0], argv);
        _exit(98);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (err) *err = test_read_file(ef);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int test_kill9_when(char *const argv[], const char *wait_for, int delay_ms, int *status) {
    fflush(stdout);
    pid_t pid = fork();
    IB_ASSERT(pid >= 0, "fork failed");
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(99);
        execv(argv[0], argv);
        _exit(98);
    }
    *status = 0;
    for (int t = 0; t < 300000 && wait_for && access(wait_for, F_OK) != 0; t++) {
        if (waitpid(pid, status, WNOHANG) == pid) return 0;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    if (delay_ms > 0) nanosleep(&(struct timespec){delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L}, NULL);
    if (waitpid(pid, status, WNOHANG) == pid) return 0;
    kill(pid, SIGKILL);
    IB_ASSERT(waitpid(pid, status, 0) == pid, "waitpid");
    return 1;
}

static char tmpfs_dir[300];

static void unmount_tmpfs(void) {
    if (tmpfs_dir[0] && umount2(tmpfs_dir, MNT_DETACH) != 0) fprintf(stderr, "could not unmount %s\n", tmpfs_dir);
}

const char *test_small_tmpfs(long long bytes, char *why, size_t n) {
    static int k, registered;
    const char *scratch = test_tmpdir();
    if (!registered) atexit(unmount_tmpfs), registered = 1;   // after the scratch folder's removal: runs before it
    unmount_tmpfs();                                            // one at a time
    snprintf(tmpfs_dir, sizeof tmpfs_dir, "%s/tmpfs%d", scratch, ++k);
    IB_ASSERT(mkdir(tmpfs_dir, 0755) == 0, "cannot make %s", tmpfs_dir);
    char opts[64];
    snprintf(opts, sizeof opts, "size=%lld", bytes);
    if (mount("tmpfs", tmpfs_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
        snprintf(why, n, "cannot mount a tmpfs here (%s; the test needs root or CAP_SYS_ADMIN)", strerror(errno));
        tmpfs_dir[0] = 0;
        return NULL;
    }
    return tmpfs_dir;
}

int test_search_pick(const char *json, double *ms, double *score) {
    json_t *j = json ? json_loads(json, 0, NULL) : NULL;
    json_t *p = json_array_get(json_object_get(json_array_get(json_object_get(j, "targets"), 0), "picks"), 0);
    int found = p ? json_is_true(json_object_get(p, "found")) : -1;
    if (ms) *ms = json_real_value(json_object_get(p, "ms"));
    if (score) *score = json_real_value(json_object_get(p, "score"));
    json_decref(j);
    return found;
}
