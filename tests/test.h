// The test harness: TEST(name) { ... } in any tests/test_*.c registers a case; CHECK stops the case
// with a failure message; SKIP stops it as skipped with a reason. Each test binary prints one line per
// case (PASS / FAIL / SKIP) and exits non-zero if any failed; tools/run_tests.sh adds them up.
#ifndef IB_TEST_H
#define IB_TEST_H

#include "core/core.h"

void ib_test_register(const char *name, void (*fn)(void));
void ib_test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ib_test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int ib_test_failed(void);   // has the running case failed or skipped?

#define TEST(fn)                                                                \
    static void fn(void);                                                       \
    __attribute__((constructor)) static void register_##fn(void) { ib_test_register(#fn, fn); } \
    static void fn(void)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) { ib_test_fail(__FILE__, __LINE__, __VA_ARGS__); return; } \
    } while (0)

#define SKIP(...) do { ib_test_skip(__VA_ARGS__); return; } while (0)

// ||a - b|| / ||b|| in double; a NaN or Inf anywhere in a or b gives +inf.
double rel_err(const float *a, const float *b, int64_t n);
double max_abs_diff(const float *a, const float *b, int64_t n);

// Fills a tensor with N(0, std) or U(lo, hi) from a seeded stream.
void fill_normal(ib_tensor *t, uint64_t seed, float std);
void fill_uniform(ib_tensor *t, uint64_t seed, float lo, float hi);

// Gradient check by central differences. `fwd` builds the op under test from leaf inputs. The check
// compares d(sum(out * r))/d(in[i]) for each i with check[i] set, r ~ N(0,1) fixed; the loss is summed
// in double. Up to max_elems elements per input are checked (spread evenly; 0 = all). A NaN or Inf in
// either gradient fails before any tolerance is looked at. Each element must pass on its own:
// |analytic - numeric| / max(|numeric|, RMS of the input's numeric gradient) <= tol. Returns 1 when all
// pass, else 0 and a message in msg. IBNAS_GRADCHECK_REPORT=1 prints each input's worst error to stderr
// (how the tolerances below were measured: ops 1e-4 or less at h 1e-2, blocks 1.4e-3 at h 3e-3).
typedef ib_tensor *(*gc_forward)(ib_ctx *ctx, ib_tensor **in, void *user);
typedef struct {
    double h;          // step, default 1e-2 (inputs of order 1, float32)
    double tol;        // max error of any element (above), default 1e-3
    int max_elems;     // default 0 (all)
} gc_opts;
int gradcheck(gc_forward fwd, void *user, int n_in, ib_tensor *const *in, const int *check, gc_opts opt,
              char *msg, size_t msgn);

// Reference files written by tests/ref/*.py. Returns the path of tests/ref/NAME found from the
// working directory or from the test binary's location (tests run from the project root).
const char *ref_path(const char *name);
// A file of the project (e.g. "search/spaces/tiny.space.json") found the same way; the result lives until
// eight more calls have been made.
const char *project_path(const char *rel);
// Compares t against dataset `name` of a reference file: rel_err <= tol. Message on failure.
int ref_compare(ib_h5 *f, const char *name, const ib_tensor *t, double tol, char *msg, size_t msgn);

// The shared/ folder beside the project (../shared), or NULL when absent (tests then SKIP).
const char *shared_dir(void);

// A scratch folder (mkdtemp under $TMPDIR or /tmp) made on first use and removed when the binary exits.
const char *test_tmpdir(void);
// TMPDIR/name in that folder; the last 16 results stay valid.
const char *test_scratch(const char *name);

// The ibnas command under test: $IBNAS, else build/ibnas (tests run from the project root).
const char *test_ibnas_bin(void);
// Runs a shell command and returns its exit code (-1 when it did not exit normally). Its stdout and
// stderr (whole, NUL-terminated, malloc'd) go to *out and *err when those are given.
int test_run(const char *cmd, char **out, char **err);
// A whole file, NUL-terminated and malloc'd (empty when it cannot be read).
char *test_read_file(const char *path);
// 1 when the float32 dataset `name` (e.g. "params/seg.classifier.weight") of two HDF5 files is the same, shape
// and bits; a missing one stops the binary.
int test_same_array(const char *a, const char *b, const char *name);
// A latency budget halfway between the smallest and the largest subnet of a space, predicted by a table at
// res; smallest / largest (n bytes each; may be NULL) get the paths of those archs, written into the scratch
// folder.
double test_budget_between(const char *space, const char *lut, int res, char *smallest, char *largest, size_t n);
// The same for the network a latency head names (a segmenter; NULL: the classifier).
// The first target's first pick in what `ibnas search --json` printed: 1 found, 0 not found, -1 no such
// pick (or not JSON); its predicted ms and score (NULL: not wanted).
int test_search_pick(const char *json, double *ms, double *score);
double test_budget_between_head(const char *space, const char *lut, int res, const ib_latency_head *head, char *smallest,
                                char *largest, size_t n);
// The shared head of a detection or segmentation supernet file scored path after path (tests/sn_head.c): the
// largest path A, the smallest B, A and B again (calibration on the file's recorded training data, metrics on
// val). Each path's metrics are the same both times; the head's BN statistics after B are the exact average
// over the calibration batches of B's head-BN inputs (computed independently) and differ from A's; the path's
// own statistics are the backbone recalibration's. 1 on success, else 0 and the reason in msg.
int test_sn_head_recal(const char *supernet, const char *val, char *msg, size_t n);

// Full disks. test_run_limited runs argv (argv[0] the program's path; stdout to /dev/null, stderr, the first
// 64 KiB, to *err) with its files limited to fsize bytes (RLIMIT_FSIZE; < 0: no limit) and SIGXFSZ ignored,
// so a write past the limit comes back short, then fails with EFBIG ("File too large"), as on a full
// disk; no privileges needed. Returns the exit code, -1 when it did not exit normally.
int test_run_limited(char *const argv[], long long fsize, char **err);
// kill -9 at a chosen moment: starts argv (stdout and stderr to /dev/null), waits up to 5 minutes (sanitizer
// builds are slow) for the file wait_for to exist (NULL: no wait), then delay_ms more, and sends SIGKILL.
// Returns 1 when it was killed, 0 when it had exited by itself (its wait status in *status).
int test_kill9_when(char *const argv[], const char *wait_for, int delay_ms, int *status);
// A tmpfs of `bytes` mounted on a new folder in the scratch folder, unmounted when the binary exits; NULL
// with the reason in why when this process may not mount (not root, no CAP_SYS_ADMIN in a container).
const char *test_small_tmpfs(long long bytes, char *why, size_t n);

#endif
