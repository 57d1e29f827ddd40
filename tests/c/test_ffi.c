/* The C ABI as the iOS app uses it, linked against the STATIC library (libapoyo_sync_ffi.a,
 * feature "testing") and run by scripts/test-c.sh under valgrind against a real reference
 * endpoint process (`apoyo serve --dev`). It calls every function of include/apoyo_sync.h and
 * every error path: NULL, forged and closed handles, bad arguments, refusals of the core, the
 * host key guard refusing, a panic inside the library, cancel and status from another thread.
 * Protocol v1.1: the INE root is required; with the endpoint's root the flow reaches a verified
 * COUNTED receipt; with another root's line nothing is deleted (the capture is quarantined).
 *
 * usage: test_ffi <endpoint url> <endpoint public key hex> <INE root line> <other INE root
 *        line> <work dir> <images dir>
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apoyo_sync.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    checks++;                                                              \
    if (!(cond)) {                                                         \
      failures++;                                                          \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
    }                                                                      \
  } while (0)

/* Expects `call` to return `code`, and a non-empty message for a failure. */
#define EXPECT(code, call)                                                 \
  do {                                                                     \
    int rc_ = (call);                                                      \
    CHECK(rc_ == (code), "%s returned %d, expected %d (%s)", #call, rc_,   \
          (int)(code), last_message());                                    \
    if ((code) != APOYO_CODE_OK) {                                         \
      CHECK(strlen(last_message()) > 0, "%s: no message", #call);          \
    }                                                                      \
  } while (0)

static char message[1024];

/* The last error's message (copied, the buffer freed). */
static const char *last_message(void) {
  ApoyoBuffer b = {0};
  if (apoyo_last_error_message(&b) != APOYO_CODE_OK) return "(no message)";
  size_t n = b.len < sizeof message - 1 ? b.len : sizeof message - 1;
  if (n) memcpy(message, b.ptr, n);
  message[n] = 0;
  apoyo_buffer_free(b);
  return message;
}

static ApoyoSlice str(const char *s) {
  ApoyoSlice sl = {(const uint8_t *)s, s ? strlen(s) : 0};
  return sl;
}

static ApoyoSlice bytes(const void *p, size_t n) {
  ApoyoSlice sl = {(const uint8_t *)p, n};
  return sl;
}

/* A buffer's text, NUL-terminated, in a fresh malloc; the buffer is freed. */
static char *take_text(ApoyoBuffer b) {
  char *s = malloc(b.len + 1);
  if (b.len) memcpy(s, b.ptr, b.len);
  s[b.len] = 0;
  apoyo_buffer_free(b);
  return s;
}

static unsigned char *read_file(const char *dir, const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "short read\n"); exit(2); }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* ---- the host key guard: a toy wrap (XOR with a device secret, a tag) ---- */

typedef struct {
  unsigned char device; /* which "device" this guard belongs to */
  int unavailable;      /* 1: the platform key is gone */
} Guard;

static int32_t guard_wrap(void *ctx, ApoyoSlice label, ApoyoSlice key, uint8_t *out,
                          size_t out_cap, size_t *out_len) {
  Guard *g = ctx;
  (void)label;
  if (g->unavailable) return APOYO_GUARD_UNAVAILABLE;
  if (key.len != 32 || out_cap < 34) return APOYO_GUARD_UNAVAILABLE;
  out[0] = 0xA5;
  out[1] = g->device;
  for (size_t i = 0; i < 32; i++) out[2 + i] = key.ptr[i] ^ (uint8_t)(g->device * 31 + i);
  *out_len = 34;
  return APOYO_GUARD_OK;
}

static int32_t guard_unwrap(void *ctx, ApoyoSlice label, ApoyoSlice wrapped, uint8_t *out_key) {
  Guard *g = ctx;
  (void)label;
  if (g->unavailable) return APOYO_GUARD_UNAVAILABLE;
  if (wrapped.len != 34 || wrapped.ptr[0] != 0xA5) return APOYO_GUARD_UNAVAILABLE;
  if (wrapped.ptr[1] != g->device) return APOYO_GUARD_WRONG_DEVICE;
  for (size_t i = 0; i < 32; i++) out_key[i] = wrapped.ptr[2 + i] ^ (uint8_t)(g->device * 31 + i);
  return APOYO_GUARD_OK;
}

/* ---- the listener: counts events; pauses the sync thread at "sync_started" on request ---- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int events, progress, destroyed, captured, purged, quarantined;
  int hold_at_start; /* 1: block the sync thread at sync_started until released */
  int started, released;
} Listener;

static void on_event(void *ctx, const uint8_t *json, size_t len) {
  Listener *l = ctx;
  char buf[2048];
  size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
  memcpy(buf, json, n);
  buf[n] = 0;
  pthread_mutex_lock(&l->lock);
  l->events++;
  if (strstr(buf, "\"state\":\"captured\"")) l->captured++;
  if (strstr(buf, "\"state\":\"purged\"")) l->purged++;
  if (strstr(buf, "\"state\":\"quarantined\"")) l->quarantined++;
  if (strstr(buf, "\"event\":\"sync_started\"") && l->hold_at_start) {
    l->started = 1;
    pthread_cond_broadcast(&l->cond);
    while (!l->released) pthread_cond_wait(&l->cond, &l->lock);
  }
  pthread_mutex_unlock(&l->lock);
}

static void on_progress(void *ctx, const ApoyoProgress *p) {
  Listener *l = ctx;
  (void)p;
  pthread_mutex_lock(&l->lock);
  l->progress++;
  pthread_mutex_unlock(&l->lock);
}

static void on_destroy(void *ctx) {
  Listener *l = ctx;
  pthread_mutex_lock(&l->lock);
  l->destroyed++;
  pthread_mutex_unlock(&l->lock);
}

/* ---- helpers over a live endpoint ---- */

static const char *endpoint_url;
static const char *endpoint_key_hex;

static char *mailbox_code(const char *email) {
  char cmd[1024], out[1024] = {0};
  snprintf(cmd, sizeof cmd, "curl -sf %s/v1/dev/mailbox/%s", endpoint_url, email);
  FILE *p = popen(cmd, "r");
  size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
  if (p) pclose(p);
  out[n] = 0;
  char *at = strstr(out, "\"code\":\"");
  if (!at) { fprintf(stderr, "no code in the mailbox: %s\n", out); exit(2); }
  at += 8;
  char *end = strchr(at, '"');
  if (!end) exit(2);
  *end = 0;
  return strdup(at);
}

static unsigned char *front, *back, *selfie, *signature;
static size_t front_len, back_len, selfie_len, signature_len;

static int capture(const ApoyoEngine *e, const char *process, const char *clave, char **id) {
  char desc[512];
  snprintf(desc, sizeof desc,
           "{\"process_id\":\"%s\",\"model\":\"G\",\"fields\":{\"clave_elector\":\"%s\"},"
           "\"location\":{\"lat\":19.43,\"lon\":-99.13,\"accuracy_m\":8.0}}",
           process, clave);
  ApoyoBuffer out = {0};
  int rc = apoyo_engine_capture(e, str(desc), bytes(front, front_len), bytes(back, back_len),
                                bytes(selfie, selfie_len), bytes(signature, signature_len), &out);
  if (rc == APOYO_CODE_OK && id) *id = take_text(out);
  else apoyo_buffer_free(out);
  return rc;
}

typedef struct {
  const ApoyoEngine *engine;
  int rc;
  ApoyoSyncReport report;
} SyncJob;

static void *sync_thread(void *arg) {
  SyncJob *j = arg;
  j->rc = apoyo_engine_sync(j->engine, 60000, &j->report);
  return NULL;
}

/* ---- the tests ---- */

static unsigned char key[32];
static ApoyoProvisioning prov;
static const char *other_root; /* another endpoint's INE root line */
static char dir_a[1024], dir_b[1024], dir_c[1024];

static void boundary_paths(void) {
  /* Codes the bridge forces: every one comes back with its message; a panic is caught. */
  const int codes[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 20, 21, 22, 23, 30, 31, 32, 33,
                       34, 35, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 90, 91, 92, 99, 100, 101,
                       102, 103};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) EXPECT(codes[i], apoyo_testing_fail(codes[i]));
  EXPECT(APOYO_CODE_OK, apoyo_testing_fail(0));
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_testing_fail(77));
  EXPECT(APOYO_CODE_PANIC, apoyo_testing_panic());
  CHECK(strstr(last_message(), "panicked") != NULL, "panic message: %s", message);
  /* The library still works after a panic. */
  EXPECT(APOYO_CODE_OK, apoyo_testing_fail(0));
  CHECK(strlen(last_message()) == 0, "a success clears the message");
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_last_error_message(NULL));
  CHECK(strncmp(apoyo_version(), "0.", 2) == 0, "version %s", apoyo_version());
  ApoyoBuffer empty = {0};
  apoyo_buffer_free(empty); /* harmless */

  /* Handles: NULL, forged, never dereferenced. */
  ApoyoEngine *forged = (ApoyoEngine *)(uintptr_t)0x1234;
  ApoyoStatus st;
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_status(NULL, &st));
  EXPECT(APOYO_CODE_INVALID_HANDLE, apoyo_engine_status(forged, &st));
  EXPECT(APOYO_CODE_INVALID_HANDLE, apoyo_engine_close(forged));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_close(NULL));
  EXPECT(APOYO_CODE_INVALID_HANDLE, apoyo_engine_cancel(forged));
  EXPECT(APOYO_CODE_INVALID_HANDLE, apoyo_engine_set_network(forged, 1));
}

/* The INE root is required and must be an INE root line; nothing is created without one. */
static void root_paths(ApoyoKeyGuard *kg) {
  ApoyoEngine *e = NULL;
  ApoyoProvisioning p = prov;
  ApoyoSlice none = {NULL, 0};
  p.ine_root = none;
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  CHECK(strstr(message, "ine_root is required") != NULL, "missing root: %s", message);
  p.ine_root = str("  \n");
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  CHECK(strstr(message, "ine_root is required") != NULL, "blank root: %s", message);
  /* The seal key's line where the root belongs: another key's tag. */
  char seal_line[128];
  snprintf(seal_line, sizeof seal_line, "apoyo-seal-pub-v1 %s", endpoint_key_hex);
  p.ine_root = str(seal_line);
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  CHECK(strstr(message, "ine_root") && strstr(message, endpoint_key_hex) == NULL,
        "seal line as root: %s", message);
  p.ine_root = str(endpoint_key_hex); /* bare hex: the tag is required */
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  p.ine_root = str("apoyo-ine-root-v1 0000000000000000000000000000000000000000000000000000000000000000");
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  const uint8_t bad_utf8[] = {0xff, 0xfe};
  p.ine_root = bytes(bad_utf8, 2);
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &p, NULL, &e));
  CHECK(e == NULL, "no handle without a root");
}

static void opening_paths(Guard *g, ApoyoKeyGuard *kg) {
  ApoyoEngine *e = NULL;
  ApoyoKeyGuard no_cb = {g, NULL, NULL};
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_init(str(dir_a), kg, &prov, NULL, NULL));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_init(str(dir_a), NULL, &prov, NULL, &e));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_init(str(dir_a), &no_cb, &prov, NULL, &e));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_init(str(dir_a), kg, NULL, NULL, &e));
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(""), kg, &prov, NULL, &e));
  const uint8_t bad_utf8[] = {0xff, 0xfe, 0};
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(bytes(bad_utf8, 2), kg, &prov, NULL, &e));
  ApoyoSlice dangling = {NULL, 5};
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_init(dangling, kg, &prov, NULL, &e));
  ApoyoProvisioning short_key = prov;
  short_key.endpoint_public_key.len = 31;
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &short_key, NULL, &e));
  ApoyoProvisioning bad_pins = prov;
  bad_pins.pins = bytes(key, 31);
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_init(str(dir_a), kg, &bad_pins, NULL, &e));
  root_paths(kg);
  EXPECT(APOYO_CODE_NO_STORE, apoyo_engine_open(str(dir_a), kg, &prov, NULL, &e));
  g->unavailable = 1;
  EXPECT(APOYO_CODE_KEY_UNAVAILABLE, apoyo_engine_init(str(dir_b), kg, &prov, NULL, &e));
  g->unavailable = 0;
}

static ApoyoEngine *open_and_register(ApoyoKeyGuard *kg) {
  ApoyoEngine *e = NULL;
  ApoyoOptions opts = {UINT64_MAX, str("")};
  EXPECT(APOYO_CODE_OK, apoyo_engine_init(str(dir_a), kg, &prov, &opts, &e));
  ApoyoEngine *again = NULL;
  EXPECT(APOYO_CODE_STORE_EXISTS, apoyo_engine_init(str(dir_a), kg, &prov, NULL, &again));
  EXPECT(APOYO_CODE_STORE_BUSY, apoyo_engine_open(str(dir_a), kg, &prov, NULL, &again));
  CHECK(again == NULL, "no handle on failure");

  ApoyoBuffer id = {0};
  EXPECT(APOYO_CODE_OK, apoyo_engine_device_id(e, &id));
  char *device = take_text(id);
  CHECK(strlen(device) == 32, "device id %s", device);
  free(device);

  int64_t t = 0;
  EXPECT(APOYO_CODE_NOT_REGISTERED, apoyo_engine_activate(e, str("ABCDEFGHIJ"), &t));
  EXPECT(APOYO_CODE_INVALID_ARGUMENT,
         apoyo_engine_register(e, str(endpoint_url), str("c@example.org"), 7,
                               bytes(front, front_len), &t));
  EXPECT(APOYO_CODE_NULL_POINTER,
         apoyo_engine_register(e, str(endpoint_url), str("c@example.org"), 0,
                               bytes(front, front_len), NULL));
  EXPECT(APOYO_CODE_INVALID,
         apoyo_engine_register(e, str(endpoint_url), str("not an address"), 0,
                               bytes(front, front_len), &t));
  EXPECT(APOYO_CODE_OK, apoyo_engine_register(e, str(endpoint_url), str("c@example.org"),
                                              APOYO_PROVIDER_GOOGLE, bytes(front, front_len), &t));
  CHECK(t > 0, "code expiry %lld", (long long)t);
  char *code = mailbox_code("c@example.org");
  EXPECT(APOYO_CODE_ACTIVATION, apoyo_engine_activate(e, str("ZZZZZZZZZZ"), &t));
  EXPECT(APOYO_CODE_OK, apoyo_engine_activate(e, str(code), &t));
  free(code);
  return e;
}

static void store_paths(ApoyoEngine *e, Listener *l) {
  uint32_t n = 0;
  EXPECT(APOYO_CODE_INVALID_PROCESS, apoyo_engine_add_processes(e, str("[{]"), &n));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_add_processes(e, str("[]"), NULL));
  EXPECT(APOYO_CODE_OK,
         apoyo_engine_add_processes(
             e,
             str("[{\"id\":\"solo-local\",\"name\":\"Only on this device\",\"accepted_models\":"
                 "[\"G\"],\"vigencia_cutoff\":\"2022-01-01\",\"scope\":\"national\"}]"),
             &n));
  CHECK(n == 1, "added %u", n);
  ApoyoBuffer list = {0};
  EXPECT(APOYO_CODE_OK, apoyo_engine_processes(e, &list));
  char *procs = take_text(list);
  CHECK(strstr(procs, "revocacion-2022") && strstr(procs, "solo-local"), "processes %s", procs);
  free(procs);
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_processes(e, NULL));

  char *id = NULL;
  EXPECT(APOYO_CODE_DECODE, capture(e, "revocacion-2022\"x", "AAAXYZ90010101H001", NULL));
  CHECK(strstr(message, "AAAXYZ") == NULL, "no value in the message: %s", message);
  EXPECT(APOYO_CODE_INVALID, capture(e, "revocacion-2022", "NOT-A-CLAVE", NULL));
  CHECK(strstr(message, "NOT-A-CLAVE") == NULL, "no value in the message: %s", message);
  EXPECT(APOYO_CODE_UNKNOWN_PROCESS, capture(e, "no-such-process", "AAAXYZ90010101H001", NULL));
  EXPECT(APOYO_CODE_OK, capture(e, "revocacion-2022", "AAAXYZ90010101H001", &id));
  EXPECT(APOYO_CODE_DUPLICATE, capture(e, "revocacion-2022", "AAAXYZ90010101H001", NULL));
  char *rejected = NULL;
  EXPECT(APOYO_CODE_OK, capture(e, "solo-local", "BBBXYZ90010101H002", &rejected));
  EXPECT(APOYO_CODE_NULL_POINTER,
         apoyo_engine_capture(e, str("{}"), str(""), str(""), str(""), str(""), NULL));
  CHECK(l->captured == 2, "captured events %d", l->captured);

  ApoyoStatus st;
  EXPECT(APOYO_CODE_OK, apoyo_engine_status(e, &st));
  CHECK(st.captured == 2 && st.registered && st.activated_until > 0 && !st.syncing,
        "status captured %llu", (unsigned long long)st.captured);
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_status(e, NULL));
  EXPECT(APOYO_CODE_OK, apoyo_engine_captures(e, &list));
  char *caps = take_text(list);
  CHECK(strstr(caps, id) != NULL, "captures list %s", caps);
  CHECK(strstr(caps, "AAAXYZ") == NULL, "no clave in the list");
  free(caps);
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_captures(e, NULL));
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_retry(e, str("not-an-id")));
  EXPECT(APOYO_CODE_UNKNOWN_CAPTURE,
         apoyo_engine_retry(e, str("0193a3c4-0000-7000-8000-000000000000")));

  /* Policies: nothing goes out without a network, or on cellular under "Wi-Fi only". */
  ApoyoSyncReport r;
  EXPECT(APOYO_CODE_INVALID_ARGUMENT, apoyo_engine_set_network(e, 9));
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_network(e, APOYO_NETWORK_NONE));
  EXPECT(APOYO_CODE_OK, apoyo_engine_sync(e, 0, &r));
  CHECK(r.stopped == APOYO_STOP_NO_NETWORK && r.pending == 2, "stopped %d", r.stopped);
  ApoyoNetworkPolicy wifi_only = {true, UINT64_MAX};
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_set_network_policy(e, NULL));
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_network_policy(e, &wifi_only));
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_network(e, APOYO_NETWORK_CELLULAR));
  EXPECT(APOYO_CODE_OK, apoyo_engine_sync(e, 0, &r));
  CHECK(r.stopped == APOYO_STOP_WIFI_ONLY, "stopped %d", r.stopped);
  ApoyoNetworkPolicy tiny = {false, 1000};
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_network_policy(e, &tiny));
  EXPECT(APOYO_CODE_OK, apoyo_engine_sync(e, 0, &r));
  CHECK(r.stopped == APOYO_STOP_CELLULAR_CAP_REACHED, "stopped %d", r.stopped);
  EXPECT(APOYO_CODE_OK, apoyo_engine_status(e, &st));
  CHECK(st.metered_bytes <= 1000, "metered %llu", (unsigned long long)st.metered_bytes);
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_network(e, APOYO_NETWORK_WIFI));
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_sync(e, 0, NULL));

  /* A sync on another thread: while it runs, status, a second sync and cancel from here. */
  SyncJob job = {e, -1, {0}};
  pthread_t t;
  pthread_mutex_lock(&l->lock);
  l->hold_at_start = 1;
  pthread_mutex_unlock(&l->lock);
  pthread_create(&t, NULL, sync_thread, &job);
  pthread_mutex_lock(&l->lock);
  while (!l->started) pthread_cond_wait(&l->cond, &l->lock);
  pthread_mutex_unlock(&l->lock);
  EXPECT(APOYO_CODE_OK, apoyo_engine_status(e, &st));
  CHECK(st.syncing, "status says syncing");
  ApoyoSyncReport r2;
  EXPECT(APOYO_CODE_SYNC_RUNNING, apoyo_engine_sync(e, 0, &r2));
  EXPECT(APOYO_CODE_OK, apoyo_engine_cancel(e));
  pthread_mutex_lock(&l->lock);
  l->released = 1;
  l->hold_at_start = 0;
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->lock);
  pthread_join(t, NULL);
  CHECK(job.rc == APOYO_CODE_OK && job.report.stopped == APOYO_STOP_CANCELLED,
        "cancelled run: rc %d stopped %d", job.rc, job.report.stopped);

  /* capture -> sync -> receipt; the capture the endpoint refuses is quarantined. */
  EXPECT(APOYO_CODE_OK, apoyo_engine_sync(e, 60000, &r));
  CHECK(r.committed == 1 && r.quarantined == 1 && r.pending == 0 &&
            r.stopped == APOYO_STOP_DRAINED,
        "sync: committed %llu quarantined %llu pending %llu stopped %d",
        (unsigned long long)r.committed, (unsigned long long)r.quarantined,
        (unsigned long long)r.pending, r.stopped);
  CHECK(l->purged == 1 && l->quarantined == 1 && l->progress >= 2, "events purged %d q %d p %d",
        l->purged, l->quarantined, l->progress);
  EXPECT(APOYO_CODE_OK, apoyo_engine_receipts(e, &list));
  char *receipts = take_text(list);
  CHECK(strstr(receipts, id) && strstr(receipts, "\"verified\":true"), "receipts %s", receipts);
  free(receipts);
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_engine_receipts(e, NULL));
  EXPECT(APOYO_CODE_OK, apoyo_engine_retry(e, str(rejected)));
  EXPECT(APOYO_CODE_OK, apoyo_engine_captures(e, &list));
  caps = take_text(list);
  CHECK(strstr(caps, "\"state\":\"captured\"") != NULL, "requeued: %s", caps);
  free(caps);
  free(id);
  free(rejected);
}

/* A device provisioned with ANOTHER endpoint's INE root: the endpoint counts its capture, but
 * the receipt does not chain to the root it holds, so nothing is deleted: the capture is
 * quarantined (receipt_invalid) with every byte, no receipt is kept, retry requeues it. And a
 * store made with one root refuses to open with another. */
static void wrong_root(ApoyoKeyGuard *kg) {
  ApoyoProvisioning p = prov;
  p.ine_root = str(other_root);
  ApoyoEngine *e = NULL;
  EXPECT(APOYO_CODE_KEY_UNAVAILABLE, apoyo_engine_open(str(dir_a), kg, &p, NULL, &e));
  CHECK(e == NULL, "no handle with another root");
  EXPECT(APOYO_CODE_OK, apoyo_engine_init(str(dir_c), kg, &p, NULL, &e));
  int64_t t = 0;
  EXPECT(APOYO_CODE_OK, apoyo_engine_register(e, str(endpoint_url), str("w@example.org"),
                                              APOYO_PROVIDER_GOOGLE, bytes(front, front_len), &t));
  char *code = mailbox_code("w@example.org");
  EXPECT(APOYO_CODE_OK, apoyo_engine_activate(e, str(code), &t));
  free(code);
  char *id = NULL;
  EXPECT(APOYO_CODE_OK, capture(e, "revocacion-2022", "DDDXYZ90010101H004", &id));
  ApoyoSyncReport r;
  EXPECT(APOYO_CODE_OK, apoyo_engine_sync(e, 60000, &r));
  CHECK(r.committed == 0 && r.quarantined == 1 && r.pending == 0,
        "wrong root: committed %llu quarantined %llu pending %llu",
        (unsigned long long)r.committed, (unsigned long long)r.quarantined,
        (unsigned long long)r.pending);
  ApoyoStatus st;
  EXPECT(APOYO_CODE_OK, apoyo_engine_status(e, &st));
  CHECK(st.purged == 0 && st.quarantined == 1 && st.pending_bytes > 0,
        "wrong root: purged %llu quarantined %llu pending bytes %llu",
        (unsigned long long)st.purged, (unsigned long long)st.quarantined,
        (unsigned long long)st.pending_bytes);
  ApoyoBuffer list = {0};
  EXPECT(APOYO_CODE_OK, apoyo_engine_captures(e, &list));
  char *caps = take_text(list);
  CHECK(strstr(caps, id) && strstr(caps, "\"state\":\"quarantined\"") &&
            strstr(caps, "receipt_invalid"),
        "wrong root captures %s", caps);
  free(caps);
  EXPECT(APOYO_CODE_OK, apoyo_engine_receipts(e, &list));
  char *receipts = take_text(list);
  CHECK(strstr(receipts, id) == NULL, "no receipt kept: %s", receipts);
  free(receipts);
  EXPECT(APOYO_CODE_OK, apoyo_engine_retry(e, str(id)));
  EXPECT(APOYO_CODE_OK, apoyo_engine_status(e, &st));
  CHECK(st.captured == 1 && st.purged == 0, "requeued: captured %llu",
        (unsigned long long)st.captured);
  free(id);
  EXPECT(APOYO_CODE_OK, apoyo_engine_close(e));
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr,
            "usage: %s <endpoint url> <endpoint key hex> <INE root line> <other INE root line> "
            "<work dir> <images dir>\n",
            argv[0]);
    return 2;
  }
  endpoint_url = argv[1];
  endpoint_key_hex = argv[2];
  for (int i = 0; i < 32; i++) sscanf(argv[2] + 2 * i, "%2hhx", &key[i]);
  other_root = argv[4];
  snprintf(dir_a, sizeof dir_a, "%s/store-a", argv[5]);
  snprintf(dir_b, sizeof dir_b, "%s/store-b", argv[5]);
  snprintf(dir_c, sizeof dir_c, "%s/store-c", argv[5]);
  front = read_file(argv[6], "front.jpg", &front_len);
  back = read_file(argv[6], "back.jpg", &back_len);
  selfie = read_file(argv[6], "selfie.jpg", &selfie_len);
  signature = read_file(argv[6], "signature.png", &signature_len);
  prov.endpoint_public_key = bytes(key, 32);
  prov.ca_pem = str("");
  prov.pins = str("");
  prov.ine_root = str(argv[3]);

  Guard g = {7, 0};
  ApoyoKeyGuard kg = {&g, guard_wrap, guard_unwrap};
  Listener l = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ApoyoListener al = {&l, on_event, on_progress, on_destroy};

  boundary_paths();
  opening_paths(&g, &kg);
  ApoyoEngine *e = open_and_register(&kg);
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_listener(e, &al));
  store_paths(e, &l);

  /* Replacing the listener destroys the old one; close destroys the last. */
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_listener(e, &al));
  CHECK(l.destroyed == 1, "destroyed %d", l.destroyed);
  EXPECT(APOYO_CODE_OK, apoyo_engine_close(e));
  CHECK(l.destroyed == 2, "destroyed %d", l.destroyed);
  EXPECT(APOYO_CODE_OK, apoyo_engine_close(e)); /* twice: harmless */
  ApoyoStatus st;
  EXPECT(APOYO_CODE_ENGINE_CLOSED, apoyo_engine_status(e, &st));
  EXPECT(APOYO_CODE_ENGINE_CLOSED, apoyo_engine_cancel(e));
  EXPECT(APOYO_CODE_ENGINE_CLOSED, apoyo_engine_set_listener(e, NULL));

  /* Another device's key guard cannot open the store; the right one can. */
  Guard other = {8, 0};
  ApoyoKeyGuard okg = {&other, guard_wrap, guard_unwrap};
  ApoyoEngine *e2 = NULL;
  EXPECT(APOYO_CODE_WRONG_DEVICE, apoyo_engine_open(str(dir_a), &okg, &prov, NULL, &e2));
  EXPECT(APOYO_CODE_OK, apoyo_engine_open(str(dir_a), &kg, &prov, NULL, &e2));
  ApoyoBuffer list = {0};
  EXPECT(APOYO_CODE_OK, apoyo_engine_receipts(e2, &list));
  char *receipts = take_text(list);
  CHECK(strstr(receipts, "counted") != NULL, "receipts after reopen %s", receipts);
  CHECK(strstr(receipts, "\"verified\":true") != NULL, "verified after reopen %s", receipts);
  free(receipts);
  EXPECT(APOYO_CODE_OK, apoyo_engine_set_listener(e2, NULL));
  EXPECT(APOYO_CODE_OK, apoyo_engine_close(e2));

  wrong_root(&kg);

  /* A store that cannot be used is moved aside, every byte kept. */
  ApoyoBuffer moved = {0};
  EXPECT(APOYO_CODE_NULL_POINTER, apoyo_set_aside(str(dir_a), NULL));
  EXPECT(APOYO_CODE_OK, apoyo_set_aside(str(dir_a), &moved));
  char *where = take_text(moved);
  CHECK(strstr(where, "set-aside") != NULL, "moved to %s", where);
  free(where);

  free(front);
  free(back);
  free(selfie);
  free(signature);
  printf("%d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
