/* loxi-cni shim: the per-pod executable in /opt/cni/bin, a static C11 program (libc only).
 *
 * It does what loxi/plugin/entry.py + loxi/plugin/client.py do, without an interpreter: read stdin,
 * hand the CNI call to loxi-agent, relay the agent's stdout and exit status byte for byte. Where the
 * Python client would run the call in-process (agent absent, refusing, breaking off before its
 * reply) or would do what the shim does not reproduce (a descriptor 0-2 closed, an agentSocket the
 * shim cannot decode as Python does), it execs `loxi-cni-inprocess` from its own directory (both
 * placed by `loxi-plan install`) with the same environment and stdin bytes (a memfd); if that cannot
 * run (no Python runtime), it prints a CNI error, code 11, naming the socket it tried, and exits 1.
 * VERSION is answered here (LOXI_VERSION_ANSWER, generated from intent/versions.py) unless
 * LOXI_LOG_FILE asks for the engine's log line.
 *
 * Wire format (loxi/agent/protocol.py, version 2; integers big-endian), over a SOCK_STREAM unix
 * socket, one request and one reply:
 *   request  "LOXI\x02" | env length u32 | stdin length u32 | env | stdin
 *            env: KEY=VALUE entries joined by NUL: the caller's variables whose names start with
 *            loxi.plugin.client.FORWARDED_PREFIXES (CNI_, LOXI_LOG_, ...) in environment order (first
 *            occurrence of a key wins), then LOXI_CALLER_NETNS=fd | mode:N | errno:N (how this
 *            process resolved an absolute CNI_NETNS: stat, open if a regular file)
 *            SCM_RIGHTS on the first bytes: this thread's /proc/thread-self/ns/net, then the open
 *            CNI_NETNS when LOXI_CALLER_NETNS=fd
 *   reply    "LOXI\x02" | kind 1 byte | status i32 | body length u32 | body
 *            kind 'R': body is the plugin's stdout, status its exit status; 'E': refused (in-process)
 * Socket: LOXI_AGENT_SOCKET (empty: in-process only), else the conf's top-level "agentSocket" string,
 * else /run/loxi/agent.sock. Timeouts (loxi/plugin/client.py): sending 0.5 s (connecting never waits:
 * a unix socket's full backlog is EAGAIN, as in Python), every read of the reply or of stdin 60 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
#define REQUEST_HEAD (LOXI_MAGIC_LEN + 8)
#define MAX_DEPTH 500       /* deeper than this, Python's json may hit its recursion limit: let it decide */
#define MAX_INT_DIGITS 4300 /* sys.int_info.default_max_str_digits: Python's json refuses longer integers */

static const char *const FORWARDED[] = {LOXI_FORWARDED_PREFIXES};
static const char ESCAPES[] = "\"\\/bfnrt", ESCAPED[] = "\"\\/\b\f\n\r\t"; /* JSON's \x, and the byte */

struct buf {
    unsigned char *data;
    size_t len, cap;
};

static unsigned char in_data[LOXI_MAX_STDIN + 2]; /* stdin as read (at most LOXI_MAX_STDIN + 1 bytes), a NUL */
static size_t in_len;
static char why[512] = "the agent was not tried";

static void put(struct buf *b, const void *src, size_t n) {
    while (b->len + n > b->cap) {
        b->cap = b->cap ? 2 * b->cap : 4096;
        if (!(b->data = realloc(b->data, b->cap))) {
            fputs("loxi-cni: out of memory\n", stderr);
            _exit(1);
        }
    }
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, long long ms) { /* 1 ready, 0 timed out, -1 error */
    struct pollfd p = {fd, events, 0};
    int r;
    do r = poll(&p, 1, ms > 0 ? (int)ms : 0);
    while (r < 0 && errno == EINTR); /* never, with no signal handled: a stop and continue restarts it */
    return r > 0 ? 1 : r;
}

static int write_all(int fd, const void *data, size_t n) {
    for (const char *p = data; n;) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fail(const char *what, int err) { /* -1, with why saying why */
    snprintf(why, sizeof why, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    return -1;
}

/* One UTF-8 sequence at *p (a NUL follows the bytes), surrogates allowed ('surrogatepass'); strict:
 * no overlong or out-of-range forms either. -1 if there is none there (*p unmoved). */
static int utf8_next(const unsigned char **p, unsigned *cp, int strict) {
    static const unsigned MIN[] = {0, 0, 0x80, 0x800, 0x10000};
    const unsigned char *s = *p;
    unsigned n = s[0] < 0x80 ? 1 : s[0] < 0xC2 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : s[0] < 0xF5 ? 4 : 0;
    if (!n) return -1;
    *cp = s[0] & (n == 1 ? 0x7Fu : 0x7Fu >> n);
    for (unsigned i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        *cp = (*cp << 6) | (s[i] & 0x3Fu);
    }
    if (strict && (*cp < MIN[n] || *cp > 0x10FFFF)) return -1;
    *p = s + n;
    return 0;
}

/* ---- fallback: the in-process Python launcher, same environment, same stdin bytes ---- */

/* `before`, then text as JSON string text (json.dumps, ASCII; an undecodable byte as surrogateescape shows it). */
static void json_text(const char *before, const char *text) {
    fputs(before, stdout);
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        unsigned cp;
        if (utf8_next(&p, &cp, 0)) cp = 0xDC00 + *p++;
        const char *e = cp && cp < 0x80 && cp != '/' ? strchr(ESCAPED, (int)cp) : NULL;
        if (e) printf("\\%c", ESCAPES[e - ESCAPED]);
        else if (cp >= 0x20 && cp < 0x7F) putchar((int)cp);
        else if (cp >= 0x10000) printf("\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
        else printf("\\u%04x", cp);
    }
}

/* Execs the launcher; if that fails, the CNI error of last resort in the Go library's layout. */
static _Noreturn void run_in_process(int have_data, const char *socket_path) {
    char self[4096], launcher[4200] = "/opt/cni/bin/" LAUNCHER_NAME;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
    if (slash) snprintf(launcher, sizeof launcher, "%.*s/" LAUNCHER_NAME, (int)(slash - self), self);
    int fd = have_data ? memfd_create("loxi-cni-stdin", 0) : -1, p[2];
    if (fd >= 0 && !write_all(fd, in_data, in_len) && !lseek(fd, 0, SEEK_SET) && dup2(fd, 0) == 0) {
        close(fd);
    } else if (have_data) { /* no memfd: a pipe, filled by a child */
        if (pipe(p) < 0) goto failed;
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            write_all(p[1], in_data, in_len);
            _exit(0);
        }
        close(p[1]);
        if (pid < 0 || dup2(p[0], 0) < 0) goto failed;
    }
    signal(SIGPIPE, SIG_DFL);
    execve(launcher, (char *[]){launcher, NULL}, environ);
failed:;
    int err = errno;
    char text[8192];
    if (!socket_path) snprintf(text, sizeof text, "loxi-cni cannot run in-process (loxi-agent not tried)");
    else if (!*socket_path) snprintf(text, sizeof text, "loxi-agent is off (an empty socket path) and loxi-cni cannot run in-process");
    else snprintf(text, sizeof text, "loxi-agent did not answer on %s and loxi-cni cannot run in-process", socket_path);
    json_text("{\n    \"code\": 11,\n    \"msg\": \"", text);
    snprintf(text, sizeof text, "agent: %s; in-process plugin %s: %s", why, launcher, strerror(err));
    json_text("\",\n    \"details\": \"", text);
    fputs("\"\n}", stdout);
    fflush(stdout);
    _exit(1);
}

/* ---- just enough JSON (Python's json.loads, strict) for the top-level "agentSocket" ---- */

enum { BIG_INT = 1, TOO_DEEP = 2 }; /* where Python's answer depends on its version or its stack */
struct json {
    const unsigned char *p, *end; /* *end is a NUL, so no scan passes it */
    int unsure;                   /* BIG_INT | TOO_DEEP */
    int found;                    /* the last top-level agentSocket: 0 none (or no string), 1 a path, 2 no path */
    struct buf out;               /* its bytes */
};

static size_t span(const unsigned char *p, const char *set) { return strspn((const char *)p, set); }

static int next_is(struct json *j, int c) { /* after whitespace, c (consumed) */
    j->p += span(j->p, " \t\n\r");
    if (*j->p != c) return 0;
    j->p++;
    return 1;
}

static long u_escape(const unsigned char *p) { /* the \uXXXX at p, or -1 */
    char hex[5] = {0};
    if (p[0] != '\\' || p[1] != 'u' || span(p + 2, "0123456789abcdefABCDEF") < 4) return -1;
    return strtol(memcpy(hex, p + 2, 4), NULL, 16);
}

/* A string at j->p (after its quote): -1 if invalid, 1 if it is no path for Python (a NUL, or a
 * code point str.encode(errors="surrogateescape") refuses), else 0; its bytes so encoded into out. */
static int string(struct json *j, struct buf *out) {
    static const unsigned char LEAD[] = {0, 0, 0xC0, 0xE0, 0xF0};
    int odd = 0;
    while (*j->p != '"') {
        unsigned cp = *j->p;
        if (cp < 0x20) return -1;
        if (cp == '\\') {
            const char *simple = j->p[1] ? strchr(ESCAPES, j->p[1]) : NULL;
            long high = u_escape(j->p);
            long low = high >= 0xD800 && high <= 0xDBFF ? u_escape(j->p + 6) : -1;
            if (!simple && high < 0) return -1;
            if (simple) cp = (unsigned char)ESCAPED[simple - ESCAPES];
            else if (low >= 0xDC00 && low <= 0xDFFF) cp = (unsigned)(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00));
            else cp = (unsigned)high;
            j->p += simple ? 2 : cp >= 0x10000 ? 12 : 6;
        } else if (utf8_next(&j->p, &cp, 1)) return -1;
        int escape = cp >= 0xDC80 && cp <= 0xDCFF; /* surrogateescape: the byte itself */
        odd |= !cp || (cp >= 0xD800 && cp <= 0xDFFF && !escape);
        if (!out || odd) continue;
        unsigned char enc[4];
        size_t n = escape || cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        for (size_t i = n - 1; i > 0; i--) {
            enc[i] = (unsigned char)(0x80 | (cp & 0x3F));
            cp >>= 6;
        }
        enc[0] = (unsigned char)(escape ? cp - 0xDC00 : LEAD[n] | cp);
        put(out, enc, n);
    }
    j->p++;
    return odd;
}

/* A value at j->p: 0, or -1 if it is not JSON as Python reads it (or too deep to tell). At depth 0,
 * an object's "agentSocket" members are recorded in j->found and j->out. */
static int value(struct json *j, int depth) {
    static const char *const WORDS[] = {"true", "false", "null", "NaN", "Infinity", "-Infinity"};
    static const char DIGITS[] = "0123456789";
    if (depth > MAX_DEPTH) {
        j->unsure |= TOO_DEEP;
        return -1;
    }
    if (next_is(j, '"')) return string(j, NULL) < 0 ? -1 : 0;
    int c = *j->p, closer = c == '{' ? '}' : ']';
    if (c == '{' || c == '[') {
        j->p++;
        if (next_is(j, closer)) return 0;
        do {
            int ours = 0;
            if (c == '{') {
                struct buf key = {0};
                int r = next_is(j, '"') ? string(j, depth ? NULL : &key) : -1;
                ours = r == 0 && key.len == 11 && !memcmp(key.data, "agentSocket", 11);
                free(key.data);
                if (r < 0 || !next_is(j, ':')) return -1;
            }
            if (ours) j->found = 0; /* a later non-string replaces an earlier string */
            if (ours && next_is(j, '"')) {
                j->out.len = 0;
                j->found = 1 + string(j, &j->out); /* 0 invalid, 1 a path, 2 no path */
                if (!j->found) return -1;
            } else if (value(j, depth + 1)) return -1;
        } while (next_is(j, ','));
        return next_is(j, closer) ? 0 : -1;
    }
    for (size_t i = 0; i < sizeof WORDS / sizeof *WORDS; i++) {
        size_t n = strlen(WORDS[i]);
        if (!strncmp((const char *)j->p, WORDS[i], n)) {
            j->p += n;
            return 0;
        }
    }
    if (c == '-') j->p++;
    size_t whole = *j->p == '0' ? 1 : span(j->p, DIGITS);
    if (!whole) return -1;
    j->p += whole;
    size_t fraction = *j->p == '.' ? span(j->p + 1, DIGITS) : 0;
    if (fraction) j->p += 1 + fraction;
    int e = *j->p == 'e' || *j->p == 'E';
    size_t sign = e && (j->p[1] == '+' || j->p[1] == '-');
    size_t exponent = e ? span(j->p + 1 + sign, DIGITS) : 0;
    if (exponent) j->p += 1 + sign + exponent;
    if (!fraction && !exponent && whole > MAX_INT_DIGITS) j->unsure |= BIG_INT; /* Python: ValueError, or not */
    return 0;
}

/* The socket `json.loads(stdin).get("agentSocket")` gives (the last one wins), the default where that
 * is no string (or raises), or NULL where the shim cannot tell what Python makes of the conf. */
static const char *conf_socket(void) {
    struct json j = {in_data, in_data + in_len, 0, 0, {0}};
    if (in_len >= 2 && (!in_data[0] || !in_data[1] || !memcmp(in_data, "\xFF\xFE", 2) || !memcmp(in_data, "\xFE\xFF", 2)))
        return NULL; /* UTF-16/32: Python would detect and decode it */
    if (in_len >= 3 && !memcmp(in_data, "\xEF\xBB\xBF", 3)) j.p += 3;
    unsigned cp;
    for (const unsigned char *s = j.p; s < j.end;) /* Python decodes it all first: one bad byte, invalid */
        if (utf8_next(&s, &cp, 1)) return LOXI_DEFAULT_SOCKET;
    int bad = value(&j, 0);
    j.p += span(j.p, " \t\n\r");
    if (bad || j.p != j.end) return j.unsure & TOO_DEEP ? NULL : LOXI_DEFAULT_SOCKET;
    if (j.unsure || j.found == 2) return NULL;
    put(&j.out, "", 1);
    return j.found ? (const char *)j.out.data : LOXI_DEFAULT_SOCKET;
}

static int recv_exact(int sock, unsigned char *p, size_t n) {
    while (n) {
        if (wait_fd(sock, POLLIN, LOXI_ANSWER_TIMEOUT_MS) != 1) return fail("no reply in time", 0);
        ssize_t r = recv(sock, p, n > 65536 ? 65536 : n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r < 0) return fail("reading the reply", errno);
        if (r == 0) return fail("connection closed inside the reply", 0);
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The call on sock: returns -1 (why says why) when it must run in-process, else relays the reply and exits. */
static int talk(int sock, const char *path, const struct buf *frame, int pod_fd) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t plen = strlen(path), nfds = pod_fd >= 0 ? 2 : 1, sent = 0;
    if (plen > sizeof addr.sun_path) return fail("socket path too long", 0);
    memcpy(addr.sun_path, path, plen);
    if (connect(sock, (struct sockaddr *)&addr, (socklen_t)(sizeof addr.sun_family + plen)) < 0)
        return fail("connect", errno);
    int fds[2] = {open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), pod_fd}, rc = 0;
    if (fds[0] < 0) return fail("/proc/thread-self/ns/net", errno);
    _Alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof fds)] = {0};
    struct iovec iov = {frame->data, frame->len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    *cm = (struct cmsghdr){.cmsg_len = CMSG_LEN(nfds * sizeof(int)), .cmsg_level = SOL_SOCKET, .cmsg_type = SCM_RIGHTS};
    memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    long long deadline = now_ms() + LOXI_CONNECT_TIMEOUT_MS; /* sendmsg, then the rest (Python: sendall) */
    while (!rc && sent < frame->len) {
        ssize_t w = -1;
        if (wait_fd(sock, POLLOUT, deadline - now_ms()) != 1) rc = fail("sending the request timed out", 0);
        else w = sent ? send(sock, frame->data + sent, frame->len - sent, MSG_NOSIGNAL) : sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (w < 0 && !rc && errno != EINTR && errno != EAGAIN) rc = fail("sending the request", errno);
        if (w > 0 && !sent) deadline = now_ms() + LOXI_CONNECT_TIMEOUT_MS;
        if (w > 0) sent += (size_t)w;
    }
    close(fds[0]);
    unsigned char head[LOXI_MAGIC_LEN + 9];
    if (rc || recv_exact(sock, head, sizeof head)) return -1;
    const unsigned char *h = head + LOXI_MAGIC_LEN, kind = h[0]; /* kind, status, body length */
    unsigned long size = (unsigned long)h[5] << 24 | (unsigned long)h[6] << 16 | (unsigned long)h[7] << 8 | h[8];
    if (memcmp(head, LOXI_MAGIC, LOXI_MAGIC_LEN) || (kind != 'R' && kind != 'E')) return fail("not a loxi-agent version 2 reply", 0);
    if (size > LOXI_MAX_FRAME) return fail("reply too large", 0);
    unsigned char *body = malloc(size ? size : 1);
    if (!body) return -1;
    rc = recv_exact(sock, body, size) ? -1 : kind == 'E' ? fail("refused", 0) : 0;
    if (!rc) _exit(write_all(1, body, size) ? 1 : h[4]); /* the status's low byte, all exit(status) keeps */
    free(body);
    return rc;
}

/* Returns only when the call must run in-process (why says why). */
static void call_agent(const char *path) {
    struct buf frame = {0};
    put(&frame, LOXI_MAGIC "\0\0\0\0\0\0\0\0", REQUEST_HEAD); /* the lengths, set below */
    for (char **e = environ; *e; e++) { /* CNI_*, LOXI_LOG_*, ...: the first occurrence of each key */
        const char *eq = strchr(*e, '=');
        int wanted = 0;
        for (size_t i = 0; eq && i < sizeof FORWARDED / sizeof *FORWARDED; i++)
            wanted |= !strncmp(*e, FORWARDED[i], strlen(FORWARDED[i]));
        for (char **f = environ; wanted && f < e; f++) wanted = strncmp(*f, *e, (size_t)(eq - *e) + 1) != 0;
        if (wanted) put(&frame, *e, strlen(*e) + 1);
    }
    const char *ns = getenv("CNI_NETNS"); /* resolved here, as loxi.plugin.client.caller_netns does */
    char view[64];
    struct stat st;
    int pod_fd = -1;
    if (!ns || ns[0] != '/') view[0] = 0;
    else if (stat(ns, &st) < 0) snprintf(view, sizeof view, LOXI_CALLER_NETNS_KEY "=errno:%d", errno);
    else if (!S_ISREG(st.st_mode)) snprintf(view, sizeof view, LOXI_CALLER_NETNS_KEY "=mode:%u", (unsigned)st.st_mode);
    else if ((pod_fd = open(ns, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
        snprintf(view, sizeof view, LOXI_CALLER_NETNS_KEY "=errno:%d", errno);
    else snprintf(view, sizeof view, LOXI_CALLER_NETNS_KEY "=fd");
    if (view[0]) put(&frame, view, strlen(view) + 1);
    if (frame.len > REQUEST_HEAD) frame.len--; /* no NUL after the last entry */
    size_t lengths[2] = {frame.len - REQUEST_HEAD, in_len};
    for (int i = 0; i < 8; i++) frame.data[LOXI_MAGIC_LEN + i] = (unsigned char)(lengths[i / 4] >> (24 - 8 * (i % 4)));
    put(&frame, in_data, in_len);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sock < 0) fail("socket", errno);
    else talk(sock, path, &frame, pod_fd);
    if (sock >= 0) close(sock);
    if (pod_fd >= 0) close(pod_fd);
    free(frame.data);
}

static int read_stdin(void) { /* 0, or -1 on a read error (the in-process run reads and reports it) */
    ssize_t r = 1;
    while (r > 0 && in_len <= LOXI_MAX_STDIN) {
        if (wait_fd(0, POLLIN, LOXI_ANSWER_TIMEOUT_MS) == 0) {
            fputs("loxi-cni: stdin timed out\n", stderr);
            dprintf(1, "{\n    \"code\": 5,\n    \"msg\": \"error reading from stdin: timed out\"\n}");
            _exit(1);
        }
        r = read(0, in_data + in_len, LOXI_MAX_STDIN + 1 - in_len);
        if (r > 0) in_len += (size_t)r;
        else if (r < 0 && (errno == EINTR || errno == EAGAIN)) r = 1; /* again */
    }
    return r < 0 ? -1 : 0;
}

int main(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) run_in_process(0, NULL); /* Python's sys.std* would be None: let it say */
    signal(SIGPIPE, SIG_IGN);
    const char *command = getenv("CNI_COMMAND"), *logfile = getenv("LOXI_LOG_FILE");
    if (command && !strcmp(command, "VERSION") && !(logfile && *logfile))
        return write_all(1, LOXI_VERSION_ANSWER, sizeof LOXI_VERSION_ANSWER - 1) ? 1 : 0;
    if (!command || !*command || !strcmp(command, "VERSION") || read_stdin()) run_in_process(0, NULL);
    const char *path = getenv(LOXI_SOCKET_ENV);
    if (!path) path = memmem(in_data, in_len, "\"agentSocket\"", 13) ? conf_socket() : LOXI_DEFAULT_SOCKET;
    if (!path) run_in_process(1, NULL);
    if (!*path) fail("disabled (an empty socket path)", 0);
    else if (getenv(LOXI_KILL_HOOK)) fail(LOXI_KILL_HOOK " is set (in-process only)", 0);
    else if (access(path, F_OK) < 0) fail(path, errno); /* Python: posix.stat(path) */
    else call_agent(path);
    run_in_process(1, path);
}
