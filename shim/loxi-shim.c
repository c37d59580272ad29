/* loxi-cni shim: the per-pod executable in /opt/cni/bin, a static C11 program (libc only).
 *
 * It does what loxi/plugin/entry.py + loxi/plugin/client.py do, without starting an interpreter:
 * read stdin, hand the CNI call to loxi-agent, relay the agent's stdout and exit
 * status byte for byte. Whenever the Python client would run the call in-process
 * (agent absent, refusing, breaking off before its reply) the shim execs the
 * in-process Python launcher instead, `loxi-cni-inprocess` in the shim's own
 * directory (both placed by `loxi-plan install`), with the same environment and
 * the same stdin bytes (a memfd). Where that cannot run either (no Python runtime)
 * it prints a CNI error, code 11, naming the socket it tried, and exits 1.
 * Where the Python client would do something the shim does not reproduce (a
 * descriptor 0-2 closed, a conf whose agentSocket the shim cannot decode as
 * Python does), it execs the launcher at once, so the answer is still the
 * Python client's.
 *
 * VERSION is answered here (LOXI_VERSION_ANSWER, generated from intent/versions.py),
 * unless LOXI_LOG_FILE asks for the debug log line the engine writes for it.
 *
 * Wire format (loxi/agent/protocol.py, version 2; integers big-endian), over a
 * SOCK_STREAM unix socket, one request and one reply:
 *   request  "LOXI\x02" | env length u32 | stdin length u32 | env | stdin
 *            env: KEY=VALUE entries joined by NUL: the caller's variables whose names start
 *            with loxi.plugin.client.FORWARDED_PREFIXES (CNI_, LOXI_LOG_, ...) in environment order (first occurrence of a key wins), then
 *            LOXI_CALLER_NETNS=fd | mode:N | errno:N (how this process resolved an
 *            absolute CNI_NETNS: stat, open if a regular file)
 *            SCM_RIGHTS on the first bytes: this thread's /proc/thread-self/ns/net,
 *            then the open CNI_NETNS when LOXI_CALLER_NETNS=fd
 *   reply    "LOXI\x02" | kind 1 byte | status i32 | body length u32 | body
 *            kind 'R': body is the plugin's stdout, status its exit status
 *            kind 'E': refused; the call runs in-process
 * Socket: LOXI_AGENT_SOCKET (empty: in-process only), else the conf's top-level
 * "agentSocket" string, else /run/loxi/agent.sock. Timeouts (loxi/plugin/client.py):
 * connect and send 0.5 s, every read of the reply 60 s, every read of stdin 60 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "loxi-shim-gen.h"

#define LAUNCHER_NAME "loxi-cni-inprocess"
#define LAUNCHER_DEFAULT "/opt/cni/bin/" LAUNCHER_NAME
#define MAX_DEPTH 500          /* deeper than this, Python's json may hit its recursion limit: let it decide */
#define MAX_INT_DIGITS 4300    /* sys.int_info.default_max_str_digits: Python's json refuses longer integers */

extern char **environ;
static const char CONTROL[] = "\n\r\t\b\f", CONTROL_ESC[] = "nrtbf";
static const char *const FORWARDED[] = {LOXI_FORWARDED_PREFIXES}; /* loxi.plugin.client.FORWARDED_PREFIXES */
static const char ESCAPES[] = "\"\\/bfnrt", ESCAPED[] = "\"\\/\b\f\n\r\t";

struct buf { unsigned char *data; size_t len, cap; };
#define PUTS(b, s) put((b), (s), sizeof(s) - 1)

static unsigned char *in_data; /* stdin as read (at most LOXI_MAX_STDIN + 1 bytes) */
static size_t in_len;
static char why[512] = "the agent was not tried";

static void put(struct buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap || !b->data) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) { fputs("loxi-cni: out of memory\n", stderr); _exit(1); }
        b->data = grown, b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
}

static const char *env_get(const char *key) { /* first occurrence, as posix.environ keeps it */
    size_t n = strlen(key);
    for (char **e = environ; *e; e++)
        if (strncmp(*e, key, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long deadline) { /* 1 ready, 0 timed out, -1 error */
    for (;;) {
        long long left = deadline - now_ms();
        if (left < 0) left = 0;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* ---- the CNI error of last resort, in the Go library's layout (json.dumps(indent=4), ASCII) ---- */

static void json_text(struct buf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    char esc[16];
    while (*p) {
        unsigned c = *p, cp = c, n = 1;
        if (c >= 0xC2 && c <= 0xDF && (p[1] & 0xC0) == 0x80) cp = ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu), n = 2;
        else if (c >= 0xE0 && c <= 0xEF && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80)
            cp = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu), n = 3;
        else if (c >= 0xF0 && c <= 0xF4 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80)
            cp = ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu), n = 4;
        else if (c >= 0x80) cp = 0xDC00 + c; /* an undecodable byte, as surrogateescape shows it */
        if (cp == '"' || cp == '\\') snprintf(esc, sizeof esc, "\\%c", (char)cp);
        else if (cp && cp < 0x20 && strchr(CONTROL, (int)cp)) snprintf(esc, sizeof esc, "\\%c", CONTROL_ESC[strchr(CONTROL, (int)cp) - CONTROL]);
        else if (cp >= 0x20 && cp < 0x7F) snprintf(esc, sizeof esc, "%c", (char)cp);
        else if (cp >= 0x10000) snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
        else snprintf(esc, sizeof esc, "\\u%04x", cp);
        put(b, esc, strlen(esc));
        p += n;
    }
}

static _Noreturn void fail_try_again(const char *socket_path, const char *launcher, int err) {
    struct buf b = {0};
    char msg[8192], details[8192];
    if (!socket_path) snprintf(msg, sizeof msg, "loxi-cni cannot run in-process (loxi-agent not tried)");
    else if (!*socket_path) snprintf(msg, sizeof msg, "loxi-agent is off (an empty socket path) and loxi-cni cannot run in-process");
    else snprintf(msg, sizeof msg, "loxi-agent did not answer on %s and loxi-cni cannot run in-process", socket_path);
    snprintf(details, sizeof details, "agent: %s; in-process plugin %s: %s", why, launcher, strerror(err));
    PUTS(&b, "{\n    \"code\": 11,\n    \"msg\": \"");
    json_text(&b, msg);
    PUTS(&b, "\",\n    \"details\": \"");
    json_text(&b, details);
    PUTS(&b, "\"\n}");
    write_all(1, b.data, b.len);
    _exit(1);
}

/* ---- fallback: the in-process Python launcher, same environment, same stdin bytes ---- */

static _Noreturn void run_in_process(int have_data, const char *socket_path) {
    char self[4096], launcher[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = n > 0 ? (self[n] = 0, strrchr(self, '/')) : NULL;
    if (slash) { *slash = 0; snprintf(launcher, sizeof launcher, "%s/" LAUNCHER_NAME, self); }
    else snprintf(launcher, sizeof launcher, "%s", LAUNCHER_DEFAULT);
    if (have_data) {
        int fd = memfd_create("loxi-cni-stdin", 0);
        if (fd >= 0) {
            if (write_all(fd, in_data, in_len) < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) fd = -2;
        }
        if (fd < 0) { /* no memfd: a pipe, filled by a child */
            int p[2];
            if (pipe(p) < 0) fail_try_again(socket_path, launcher, errno);
            pid_t pid = fork();
            if (pid == 0) { close(p[0]); write_all(p[1], in_data, in_len); _exit(0); }
            close(p[1]);
            if (pid < 0 || dup2(p[0], 0) < 0) fail_try_again(socket_path, launcher, errno);
        } else if (fd != 0) close(fd);
    }
    signal(SIGPIPE, SIG_DFL);
    char *argv[] = {launcher, NULL};
    execve(launcher, argv, environ);
    fail_try_again(socket_path, launcher, errno);
}

/* ---- just enough JSON (Python's json.loads, strict) for the top-level "agentSocket" ---- */

enum { J_DEFAULT, J_FOUND, J_UNSURE };
struct json { const unsigned char *p, *end; int unsure; };

static int utf8_next(struct json *j, unsigned *cp) { /* UTF-8 with surrogates allowed ('surrogatepass') */
    const unsigned char *p = j->p;
    size_t left = (size_t)(j->end - p);
    unsigned c = p[0], n, min;
    if (c < 0x80) { *cp = c; j->p++; return 0; }
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80, *cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800, *cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000, *cp = c & 0x07;
    else return -1;
    if (left < n) return -1;
    for (unsigned i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return -1;
        *cp = (*cp << 6) | (p[i] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF) return -1;
    j->p += n;
    return 0;
}

static void ws(struct json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(struct json *j, unsigned *v) {
    if (j->end - j->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = j->p[i];
        unsigned d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
        if (d == 99) return -1;
        *v = *v * 16 + d;
    }
    j->p += 4;
    return 0;
}

/* A string at j->p (after its quote); its value, as Python's str.encode(errors="surrogateescape")
 * makes it, into out when out is not NULL (a code point that encoding refuses, or NUL, sets unsure). */
static int string(struct json *j, struct buf *out) {
    for (;;) {
        if (j->p >= j->end) return -1;
        unsigned cp, c = *j->p;
        if (c == '"') { j->p++; return 0; }
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (++j->p >= j->end) return -1;
            c = *j->p++;
            const char *simple = c ? strchr(ESCAPES, (int)c) : NULL;
            if (simple) cp = (unsigned char)ESCAPED[simple - ESCAPES];
            else if (c == 'u') {
                if (hex4(j, &cp)) return -1;
                unsigned low;
                if (cp >= 0xD800 && cp <= 0xDBFF && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
                    struct json peek = {j->p + 2, j->end, 0};
                    if (!hex4(&peek, &low) && low >= 0xDC00 && low <= 0xDFFF)
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), j->p += 6;
                }
            } else return -1;
        } else if (utf8_next(j, &cp)) return -1;
        if (!out) continue;
        unsigned char enc[4];
        size_t n;
        if (cp == 0) { j->unsure = 1; continue; }
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            if (cp < 0xDC80 || cp > 0xDCFF) { j->unsure = 1; continue; }
            enc[0] = (unsigned char)(cp - 0xDC00), n = 1;
        } else if (cp < 0x80) enc[0] = (unsigned char)cp, n = 1;
        else if (cp < 0x800) enc[0] = (unsigned char)(0xC0 | cp >> 6), enc[1] = (unsigned char)(0x80 | (cp & 0x3F)), n = 2;
        else if (cp < 0x10000)
            enc[0] = (unsigned char)(0xE0 | cp >> 12), enc[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
            enc[2] = (unsigned char)(0x80 | (cp & 0x3F)), n = 3;
        else
            enc[0] = (unsigned char)(0xF0 | cp >> 18), enc[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F)),
            enc[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), enc[3] = (unsigned char)(0x80 | (cp & 0x3F)), n = 4;
        put(out, enc, n);
    }
}

static int literal(struct json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n)) return -1;
    j->p += n;
    return 0;
}

static int digits(struct json *j) {
    const unsigned char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return (int)(j->p - start > 1000000 ? 1000000 : j->p - start);
}

static int value(struct json *j, int depth) {
    if (depth > MAX_DEPTH) { j->unsure = 1; return -1; }
    ws(j);
    if (j->p >= j->end) return -1;
    unsigned c = *j->p;
    if (c == '"') { j->p++; return string(j, NULL); }
    if (c == '{' || c == '[') {
        unsigned close = c == '{' ? '}' : ']';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) { j->p++; return 0; }
        for (;;) {
            if (c == '{') {
                ws(j);
                if (j->p >= j->end || *j->p != '"') return -1;
                j->p++;
                if (string(j, NULL)) return -1;
                ws(j);
                if (j->p >= j->end || *j->p++ != ':') return -1;
            }
            if (value(j, depth + 1)) return -1;
            ws(j);
            if (j->p >= j->end) return -1;
            if (*j->p == close) { j->p++; return 0; }
            if (*j->p++ != ',') return -1;
        }
    }
    if (c == 't') return literal(j, "true");
    if (c == 'f') return literal(j, "false");
    if (c == 'n') return literal(j, "null");
    if (c == 'N') return literal(j, "NaN");
    if (c == 'I') return literal(j, "Infinity");
    if (c == '-' && j->end - j->p > 1 && j->p[1] == 'I') return literal(j, "-Infinity");
    if (c == '-') j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return -1;
    int whole = *j->p == '0' ? (j->p++, 1) : digits(j), fraction = 0;
    if (j->end - j->p > 1 && *j->p == '.' && j->p[1] >= '0' && j->p[1] <= '9') j->p++, fraction = digits(j);
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        const unsigned char *q = j->p + 1;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q < j->end && *q >= '0' && *q <= '9') j->p = q, digits(j), fraction = 1;
    }
    if (!fraction && whole > MAX_INT_DIGITS) j->unsure = 1; /* Python: ValueError, or not, by version */
    return 0;
}

/* The top-level "agentSocket", as `json.loads(stdin).get("agentSocket")` finds it (last one wins). */
static int conf_socket(struct buf *out) {
    struct json j = {in_data, in_data + in_len, 0};
    if (in_len >= 2 && (in_data[0] == 0 || in_data[1] == 0 || (in_data[0] == 0xFF && in_data[1] == 0xFE) ||
                        (in_data[0] == 0xFE && in_data[1] == 0xFF)))
        return J_UNSURE; /* UTF-16/32: Python would detect and decode it */
    if (in_len >= 3 && !memcmp(in_data, "\xEF\xBB\xBF", 3)) j.p += 3;
    /* Python decodes the whole document first: any undecodable byte makes it invalid */
    for (struct json scan = j; scan.p < scan.end;) {
        unsigned cp;
        if (utf8_next(&scan, &cp)) return J_DEFAULT;
    }
    int found = 0;
    ws(&j);
    if (j.p < j.end && *j.p == '{') {
        j.p++;
        ws(&j);
        if (j.p < j.end && *j.p == '}') j.p++;
        else
            for (;;) {
                struct buf key = {0};
                ws(&j);
                if (j.p >= j.end || *j.p != '"') return J_DEFAULT;
                j.p++;
                int prior = j.unsure;
                j.unsure = 0;
                int bad = string(&j, &key) != 0;
                int ours = !bad && !j.unsure && key.len == 11 && !memcmp(key.data, "agentSocket", 11);
                j.unsure = prior;
                free(key.data);
                ws(&j);
                if (bad || j.p >= j.end || *j.p++ != ':') return j.unsure ? J_UNSURE : J_DEFAULT;
                ws(&j);
                if (ours && j.p < j.end && *j.p == '"') {
                    int prior = j.unsure;
                    out->len = 0;
                    j.p++;
                    j.unsure = 0;
                    if (string(&j, out)) return J_DEFAULT;
                    found = j.unsure ? 2 : 1; /* 2: a value Python cannot encode (it raises) */
                    j.unsure = prior;
                } else {
                    if (ours) found = 0; /* a later non-string replaces an earlier string */
                    if (value(&j, 1)) return j.unsure ? J_UNSURE : J_DEFAULT;
                }
                ws(&j);
                if (j.p >= j.end) return J_DEFAULT;
                if (*j.p == '}') { j.p++; break; }
                if (*j.p++ != ',') return J_DEFAULT;
            }
    } else if (value(&j, 0)) return j.unsure ? J_UNSURE : J_DEFAULT;
    else found = 0; /* valid, but not an object: .get raises AttributeError */
    ws(&j);
    if (j.p != j.end) return J_DEFAULT;
    if (j.unsure || found == 2) return J_UNSURE;
    return found ? J_FOUND : J_DEFAULT;
}

/* ---- the agent ---- */

static int fail(const char *what, int err) {
    snprintf(why, sizeof why, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    return -1;
}

/* CNI_NETNS as this process resolves it (loxi.plugin.client.caller_netns): the view, and an open fd or -1. */
static int caller_netns(const char *path, char *view, size_t size) {
    struct stat st;
    view[0] = 0;
    if (!path || path[0] != '/') return -1;
    if (stat(path, &st) < 0) { snprintf(view, size, "errno:%d", errno); return -1; }
    if (!S_ISREG(st.st_mode)) { snprintf(view, size, "mode:%u", (unsigned)st.st_mode); return -1; }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) snprintf(view, size, "errno:%d", errno);
    else snprintf(view, size, "fd");
    return fd;
}

static void u32(struct buf *b, uint32_t v) {
    unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    put(b, be, 4);
}

static int recv_exact(int sock, unsigned char *p, size_t n) {
    while (n) {
        if (wait_fd(sock, POLLIN, now_ms() + LOXI_ANSWER_TIMEOUT_MS) != 1) return fail("no reply in time", 0);
        ssize_t r = recv(sock, p, n > 65536 ? 65536 : n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return fail("reading the reply", errno);
        if (r == 0) return fail("connection closed inside the reply", 0);
        p += r, n -= (size_t)r;
    }
    return 0;
}

/* 0 and the reply in *status and *body, or -1 (why says why): the caller runs the call in-process. */
static int call_agent(const char *path, int *status, struct buf *body) {
    struct buf env = {0}, frame = {0};
    size_t plen = strlen(path);
    for (char **e = environ; *e; e++) { /* CNI_*, LOXI_LOG_*, ...: first occurrence of each key */
        const char *eq = strchr(*e, '=');
        size_t klen = eq ? (size_t)(eq - *e) : 0;
        int wanted = 0;
        for (size_t i = 0; eq && i < sizeof FORWARDED / sizeof *FORWARDED; i++)
            wanted |= klen >= strlen(FORWARDED[i]) && !strncmp(*e, FORWARDED[i], strlen(FORWARDED[i]));
        if (!wanted) continue;
        int seen = 0;
        for (char **f = environ; f < e && !seen; f++) seen = !strncmp(*f, *e, klen + 1);
        if (seen) continue;
        if (env.len) put(&env, "", 1);
        put(&env, *e, strlen(*e));
    }
    char view[64];
    int pod_fd = caller_netns(env_get("CNI_NETNS"), view, sizeof view);
    if (view[0]) {
        if (env.len) put(&env, "", 1);
        put(&env, LOXI_CALLER_NETNS_KEY "=", sizeof LOXI_CALLER_NETNS_KEY);
        put(&env, view, strlen(view));
    }
    put(&frame, LOXI_MAGIC, LOXI_MAGIC_LEN);
    u32(&frame, (uint32_t)env.len);
    u32(&frame, (uint32_t)in_len);
    put(&frame, env.data, env.len);
    put(&frame, in_data, in_len);
    free(env.data);

    int rc = -1, netns_fd = -1;
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (sock < 0) { fail("socket", errno); goto out; }
    if (plen > sizeof addr.sun_path) { fail("socket path too long", 0); goto out; }
    memcpy(addr.sun_path, path, plen);
    if (connect(sock, (struct sockaddr *)&addr, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen)) < 0) {
        int err = 0;
        socklen_t len = sizeof err;
        if (errno != EINPROGRESS) { fail("connect", errno); goto out; }
        if (wait_fd(sock, POLLOUT, now_ms() + LOXI_CONNECT_TIMEOUT_MS) != 1) { fail("connect timed out", 0); goto out; }
        if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) { fail("connect", err); goto out; }
    }
    netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) { fail("/proc/thread-self/ns/net", errno); goto out; }
    int fds[2] = {netns_fd, pod_fd};
    size_t nfds = pod_fd >= 0 ? 2 : 1, sent = 0;
    union { struct cmsghdr h; char space[CMSG_SPACE(sizeof fds)]; } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {frame.data, frame.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET, cm->cmsg_type = SCM_RIGHTS, cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    long long deadline = now_ms() + LOXI_CONNECT_TIMEOUT_MS; /* sendmsg, then the rest (Python: sendall) */
    while (sent < frame.len) {
        if (wait_fd(sock, POLLOUT, deadline) != 1) { fail("sending the request timed out", 0); goto out; }
        ssize_t w = sent ? send(sock, frame.data + sent, frame.len - sent, MSG_NOSIGNAL) : sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (w < 0) { fail("sending the request", errno); goto out; }
        if (!sent) deadline = now_ms() + LOXI_CONNECT_TIMEOUT_MS;
        sent += (size_t)w;
    }
    close(netns_fd), netns_fd = -1;
    unsigned char head[LOXI_MAGIC_LEN + 9];
    if (recv_exact(sock, head, sizeof head)) goto out;
    if (memcmp(head, LOXI_MAGIC, LOXI_MAGIC_LEN) || (head[LOXI_MAGIC_LEN] != 'R' && head[LOXI_MAGIC_LEN] != 'E')) {
        fail("not a loxi-agent version 2 reply", 0);
        goto out;
    }
    const unsigned char *h = head + LOXI_MAGIC_LEN + 1;
    uint32_t raw = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint32_t size = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    if (size > LOXI_MAX_FRAME) { fail("reply too large", 0); goto out; }
    body->len = 0;
    put(body, "", 0);
    if (size) {
        unsigned char *p = malloc(size);
        if (!p || recv_exact(sock, p, size)) { free(p); goto out; }
        put(body, p, size);
        free(p);
    }
    if (head[LOXI_MAGIC_LEN] == 'E') { fail("refused", 0); goto out; }
    *status = raw <= INT32_MAX ? (int)raw : (int)((int64_t)raw - 4294967296LL);
    rc = 0;
out:
    if (netns_fd >= 0) close(netns_fd);
    if (sock >= 0) close(sock);
    if (pod_fd >= 0) close(pod_fd);
    free(frame.data);
    return rc;
}

static int read_stdin(void) { /* 0, or -1 on a read error (the in-process run reads and reports it) */
    struct buf b = {0};
    unsigned char chunk[65536];
    while (b.len <= LOXI_MAX_STDIN) {
        if (wait_fd(0, POLLIN, now_ms() + LOXI_ANSWER_TIMEOUT_MS) == 0) {
            fputs("loxi-cni: stdin timed out\n", stderr);
            static const char e[] = "{\n    \"code\": 5,\n    \"msg\": \"error reading from stdin: timed out\"\n}";
            write_all(1, (const unsigned char *)e, sizeof e - 1);
            _exit(1);
        }
        size_t want = LOXI_MAX_STDIN + 1 - b.len;
        ssize_t r = read(0, chunk, want < sizeof chunk ? want : sizeof chunk);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) { free(b.data); return -1; }
        if (r == 0) break;
        put(&b, chunk, (size_t)r);
    }
    put(&b, "", 0);
    in_data = b.data, in_len = b.len;
    return 0;
}

int main(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) run_in_process(0, NULL); /* Python's sys.std* would be None: let it say */
    signal(SIGPIPE, SIG_IGN);
    const char *command = env_get("CNI_COMMAND");
    const char *logfile = env_get("LOXI_LOG_FILE");
    if (command && !strcmp(command, "VERSION") && !(logfile && *logfile)) {
        static const char answer[] = LOXI_VERSION_ANSWER;
        return write_all(1, (const unsigned char *)answer, sizeof answer - 1) ? 1 : 0;
    }
    if (!command || !*command || !strcmp(command, "VERSION")) run_in_process(0, NULL);
    if (read_stdin()) run_in_process(0, NULL);

    struct buf from_conf = {0};
    const char *path = env_get(LOXI_SOCKET_ENV);
    if (!path) {
        path = LOXI_DEFAULT_SOCKET;
        if (memmem(in_data, in_len, "\"agentSocket\"", 13)) {
            int found = conf_socket(&from_conf);
            if (found == J_UNSURE) run_in_process(1, NULL);
            if (found == J_FOUND) {
                put(&from_conf, "", 1);
                path = (const char *)from_conf.data;
            }
        }
    }
    struct stat st;
    if (!*path) fail("disabled (an empty socket path)", 0);
    else if (env_get(LOXI_KILL_HOOK)) fail(LOXI_KILL_HOOK " is set (in-process only)", 0);
    else if (stat(path, &st) < 0) fail(path, errno);
    else {
        struct buf body = {0};
        int status = 1;
        if (call_agent(path, &status, &body) == 0) {
            int rc = write_all(1, body.data, body.len) ? 1 : status;
            _exit(rc);
        }
    }
    run_in_process(1, path);
}
