/*
 * sockctl.c: the syscall layer of sockctl, an N-API addon (contract and semantics: native/index.d.ts).
 *
 * Each exported socket function makes exactly one syscall and reports failure as an Error with
 * code = errno name, errno = number, syscall = the syscall's real name. libuv is used only by the
 * Poller, a one-shot readiness watch (uv_poll_t) that lets JS wait for an fd without blocking, and whose
 * reading mode is the streaming data path: it reads a stream into a fixed pool of slots while the fd is
 * readable and hands JS the filled slots, one callback per readable event (DESIGN.md section 1).
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <linux/inet_diag.h>  /* INET_DIAG_NOCOOKIE */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>  /* struct rtattr, RTA_* (sock_diag attributes have its layout) */
#include <linux/sock_diag.h>  /* SOCK_DIAG_BY_FAMILY */
#include <linux/sockios.h>    /* SIOCINQ, SIOCOUTQ */
#include <linux/unix_diag.h>
#ifdef __GLIBC__
#include <malloc.h> /* mallopt */
#endif
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* recv() reads up to this many bytes into a stack buffer, then copies exactly what came into a Buffer. */
#define RECV_STACK_BYTES 65536

/* ---- errors ------------------------------------------------------------------------------------- */

/* Turns a failed napi_* call into a pending JS exception, unless the call already left one. */
static void napi_failed(napi_env env, const char *expr) {
    const napi_extended_error_info *info = NULL;
    const char *why = NULL;
    bool pending = false;
    char msg[256];
    /* Read the error info first: every napi call, napi_is_exception_pending included, resets it. */
    if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL)
        why = info->error_message;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
        return;
    snprintf(msg, sizeof msg, "N-API call failed: %s (%s)", why ? why : "unknown error", expr);
    napi_throw_error(env, "ERR_NAPI", msg);
}

/* NAPI_TRY runs `onfail` once the failure is a pending exception; NAPI_CALL returns NULL (undefined). */
#define NAPI_TRY(env, call, onfail) do { if ((call) != napi_ok) { napi_failed((env), #call); onfail; } } while (0)
#define NAPI_CALL(env, call) NAPI_TRY(env, call, return NULL)

/* In a napi callback: throw (through one of the helpers below, which return false) and return undefined. */
#define FAIL(throw_expr) do { (void)(throw_expr); return NULL; } while (0)
/* In a napi callback: return undefined if a check failed (it has thrown). */
#define REQUIRE(ok) do { if (!(ok)) return NULL; } while (0)

/* Error("<syscall>: <text>") with code, errno and syscall properties, or NULL if a napi call failed. */
static napi_value make_error(napi_env env, const char *code, int err, const char *syscall, const char *text) {
    napi_value jcode, jmsg, jerr, jerrno, jsys;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", syscall, text);
    if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode) == napi_ok &&
        napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg) == napi_ok &&
        napi_create_error(env, jcode, jmsg, &jerr) == napi_ok && napi_create_int32(env, err, &jerrno) == napi_ok &&
        napi_set_named_property(env, jerr, "errno", jerrno) == napi_ok &&
        napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &jsys) == napi_ok &&
        napi_set_named_property(env, jerr, "syscall", jsys) == napi_ok)
        return jerr;
    return NULL;
}

/* Throws Error("<syscall>: <text>") with code, errno and syscall properties. Returns false. */
static bool throw_error(napi_env env, const char *code, int err, const char *syscall, const char *text) {
    bool pending = false;
    napi_value jerr = make_error(env, code, err, syscall, text);
    if (jerr != NULL)
        napi_throw(env, jerr);
    else if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", syscall, text);
        napi_throw_error(env, code, msg);
    }
    return false;
}

/* The Error of a failed syscall (errno name as code), not thrown; NULL if a napi call failed.
 * strerrorname_np / strerrordesc_np (glibc >= 2.32) are thread-safe and locale-independent. */
static napi_value errno_error(napi_env env, const char *syscall, int err) {
    const char *name = strerrorname_np(err), *desc = strerrordesc_np(err);
    return make_error(env, name ? name : "UNKNOWN", err, syscall, desc ? desc : "Unknown error");
}

static bool throw_errno(napi_env env, const char *syscall, int err) {
    const char *name = strerrorname_np(err), *desc = strerrordesc_np(err);
    return throw_error(env, name ? name : "UNKNOWN", err, syscall, desc ? desc : "Unknown error");
}

/* A failed syscall: errno is saved before anything else can clobber it. */
#define SYSFAIL(env, name) do { int err_ = errno; FAIL(throw_errno((env), (name), err_)); } while (0)

static bool type_error(napi_env env, const char *what, const char *type) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type %s", what, type);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
}

static bool range_error(napi_env env, const char *what, double min, double max) {
    char msg[160];
    snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be an integer >= %.0f and <= %.0f",
             what, min, max);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
}

/* ---- arguments and results ---------------------------------------------------------------------- */

#define ARGS(n) napi_value argv[n]; size_t argc = (n); NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL))

static bool is_type(napi_env env, napi_value v, napi_valuetype want) {
    napi_valuetype t;
    return napi_typeof(env, v, &t) == napi_ok && t == want;
}

static bool is_nullish(napi_env env, napi_value v) {
    return is_type(env, v, napi_undefined) || is_type(env, v, napi_null);
}

/* An integral JS number within [min, max]. */
static bool get_integer(napi_env env, napi_value v, const char *what, double min, double max, double *out) {
    if (!is_type(env, v, napi_number))
        return type_error(env, what, "number");
    NAPI_TRY(env, napi_get_value_double(env, v, out), return false);
    if (!(*out >= min && *out <= max) || *out != floor(*out))
        return range_error(env, what, min, max);
    return true;
}

static bool get_int(napi_env env, napi_value v, const char *what, int32_t *out) {
    double d;
    if (!get_integer(env, v, what, INT32_MIN, INT32_MAX, &d))
        return false;
    *out = (int32_t)d;
    return true;
}

/* argv[0], argv[1]... as int32 arguments with the given names: INT_ARGS(out, "fd", "backlog"). */
static bool get_ints(napi_env env, const napi_value *argv, int32_t *out, const char *const *names) {
    for (int i = 0; names[i] != NULL; i++)
        if (!get_int(env, argv[i], names[i], &out[i]))
            return false;
    return true;
}
#define INT_ARGS(out, ...) get_ints(env, argv, out, (const char *const[]){ __VA_ARGS__, NULL })

/* A JS string into buf (NUL-terminated, cut to fit): *len = bytes copied, *full = its whole length. */
static bool get_string(napi_env env, napi_value v, const char *what, char *buf, size_t size, size_t *len,
                       size_t *full) {
    if (!is_type(env, v, napi_string))
        return type_error(env, what, "string");
    NAPI_TRY(env, napi_get_value_string_utf8(env, v, NULL, 0, full), return false);
    NAPI_TRY(env, napi_get_value_string_utf8(env, v, buf, size, len), return false);
    return true;
}

/* The bytes of a Uint8Array or Buffer (napi_is_buffer takes any ArrayBufferView in Node >= 20). */
static bool get_bytes(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
    bool is = false;
    NAPI_TRY(env, napi_is_buffer(env, v, &is), return false);
    if (!is)
        return type_error(env, what, "Uint8Array");
    NAPI_TRY(env, napi_get_buffer_info(env, v, data, len), return false);
    return true;
}

static napi_status set_num(napi_env env, napi_value obj, const char *key, double num) {
    napi_value v;
    napi_status s = napi_create_double(env, num, &v);
    return s != napi_ok ? s : napi_set_named_property(env, obj, key, v);
}

/* str NULL sets null. */
static napi_status set_str(napi_env env, napi_value obj, const char *key, const char *str, size_t len) {
    napi_value v;
    napi_status s = str ? napi_create_string_utf8(env, str, len, &v) : napi_get_null(env, &v);
    return s != napi_ok ? s : napi_set_named_property(env, obj, key, v);
}

static napi_status set_bool(napi_env env, napi_value obj, const char *key, bool b) {
    napi_value v;
    napi_status s = napi_get_boolean(env, b, &v);
    return s != napi_ok ? s : napi_set_named_property(env, obj, key, v);
}

static napi_value make_num(napi_env env, double num) {
    napi_value v;
    NAPI_CALL(env, napi_create_double(env, num, &v));
    return v;
}

/* ---- addresses ---------------------------------------------------------------------------------- */

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} addr_t;

static bool invalid_address(napi_env env, const char *syscall, const char *addr) {
    char text[320];
    snprintf(text, sizeof text, "invalid address '%s'", addr);
    return throw_error(env, "EINVAL", EINVAL, syscall, text);
}

/* An optional uint32 property (flowinfo, scopeId): undefined or null reads as 0. */
static bool get_opt_u32(napi_env env, napi_value obj, const char *key, const char *what, uint32_t *out) {
    napi_value v;
    double d = 0;
    NAPI_TRY(env, napi_get_named_property(env, obj, key, &v), return false);
    if (!is_nullish(env, v) && !get_integer(env, v, what, 0, UINT32_MAX, &d))
        return false;
    *out = (uint32_t)d;
    return true;
}

static bool inet_from_js(napi_env env, napi_value obj, int family, const char *syscall, addr_t *a) {
    char host[256];
    size_t len, full;
    double port;
    uint32_t flowinfo, scope;
    napi_value v;
    NAPI_TRY(env, napi_get_named_property(env, obj, "address", &v), return false);
    if (!get_string(env, v, "addr.address", host, sizeof host, &len, &full))
        return false;
    NAPI_TRY(env, napi_get_named_property(env, obj, "port", &v), return false);
    if (!get_integer(env, v, "addr.port", 0, 65535, &port))
        return false;
    /* inet_pton would read a cut-off string, or one with an embedded NUL, as another address. */
    bool whole = full == len && strlen(host) == len;
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        a->len = sizeof *sin;
        return (whole && inet_pton(AF_INET, host, &sin->sin_addr) == 1) || invalid_address(env, syscall, host);
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    if (!get_opt_u32(env, obj, "flowinfo", "addr.flowinfo", &flowinfo) ||
        !get_opt_u32(env, obj, "scopeId", "addr.scopeId", &scope))
        return false;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sin6->sin6_flowinfo = htonl(flowinfo);
    sin6->sin6_scope_id = scope;
    a->len = sizeof *sin6;
    return (whole && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) || invalid_address(env, syscall, host);
}

static bool unix_from_js(napi_env env, napi_value obj, const char *syscall, addr_t *a) {
    struct sockaddr_un *sun = (struct sockaddr_un *)&a->ss;
    const size_t off = offsetof(struct sockaddr_un, sun_path), max = sizeof sun->sun_path; /* 108 */
    char path[sizeof sun->sun_path + 2]; /* "@" + a 107-byte name + NUL: anything longer is detectable */
    size_t len, full;
    napi_value v;
    sun->sun_family = AF_UNIX;
    NAPI_TRY(env, napi_get_named_property(env, obj, "path", &v), return false);
    if (is_type(env, v, napi_null)) { /* just the family: bind() then autobinds to an abstract name */
        a->len = sizeof(sa_family_t);
        return true;
    }
    if (!get_string(env, v, "addr.path", path, sizeof path, &len, &full))
        return false;
    if (path[0] == '@') { /* abstract: sun_path[0] = 0, then the name's bytes (NULs allowed), no terminator */
        if (full - 1 > max - 1)
            return throw_errno(env, syscall, ENAMETOOLONG);
        memcpy(sun->sun_path + 1, path + 1, len - 1);
        a->len = (socklen_t)(off + len);
        return true;
    }
    if (full >= max) /* the path and its NUL must fit */
        return throw_errno(env, syscall, ENAMETOOLONG);
    if (len == 0 || strlen(path) != len) /* "" would be read as an abstract name; a NUL would cut the path */
        return invalid_address(env, syscall, path);
    memcpy(sun->sun_path, path, len); /* the NUL comes from the zeroed storage */
    a->len = (socklen_t)(off + len + 1);
    return true;
}

/* JS SockAddr -> sockaddr; `syscall` names the caller in EINVAL / ENAMETOOLONG / EAFNOSUPPORT errors. */
static bool addr_from_js(napi_env env, napi_value obj, const char *syscall, addr_t *a) {
    napi_value v;
    int32_t family;
    memset(a, 0, sizeof *a);
    if (!is_type(env, obj, napi_object))
        return type_error(env, "addr", "object");
    NAPI_TRY(env, napi_get_named_property(env, obj, "family", &v), return false);
    if (!get_int(env, v, "addr.family", &family))
        return false;
    switch (family) {
    case AF_INET:
    case AF_INET6:
        return inet_from_js(env, obj, family, syscall, a);
    case AF_UNIX:
        return unix_from_js(env, obj, syscall, a);
    case AF_UNSPEC: /* connect() to AF_UNSPEC dissolves a datagram socket's association */
        a->ss.ss_family = AF_UNSPEC;
        a->len = sizeof(struct sockaddr);
        return true;
    default:
        return throw_errno(env, syscall, EAFNOSUPPORT);
    }
}

/* The kernel's sockaddr -> JS SockAddr. */
static napi_value addr_to_js(napi_env env, const struct sockaddr_storage *ss, socklen_t len) {
    char host[INET6_ADDRSTRLEN];
    napi_value obj;
    int family = len >= sizeof(sa_family_t) ? ss->ss_family : AF_UNSPEC;
    if (len > sizeof *ss)
        len = sizeof *ss;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, set_num(env, obj, "family", family));
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        NAPI_CALL(env, set_str(env, obj, "address", host, NAPI_AUTO_LENGTH));
        NAPI_CALL(env, set_num(env, obj, "port", ntohs(sin->sin_port)));
    } else if (family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host); /* v4-mapped: "::ffff:1.2.3.4" */
        NAPI_CALL(env, set_str(env, obj, "address", host, NAPI_AUTO_LENGTH));
        NAPI_CALL(env, set_num(env, obj, "port", ntohs(sin6->sin6_port)));
        NAPI_CALL(env, set_num(env, obj, "flowinfo", ntohl(sin6->sin6_flowinfo)));
        NAPI_CALL(env, set_num(env, obj, "scopeId", sin6->sin6_scope_id));
    } else if (family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (len <= off) { /* unnamed */
            NAPI_CALL(env, set_str(env, obj, "path", NULL, 0));
        } else if (sun->sun_path[0] == '\0') { /* abstract: "@" + the name's bytes */
            char name[sizeof sun->sun_path];
            name[0] = '@';
            memcpy(name + 1, sun->sun_path + 1, len - off - 1);
            NAPI_CALL(env, set_str(env, obj, "path", name, len - off));
        } else { /* a path, not NUL-terminated when it fills sun_path */
            NAPI_CALL(env, set_str(env, obj, "path", sun->sun_path, strnlen(sun->sun_path, len - off)));
        }
    }
    return obj;
}

/* ---- per-env state and the Poller record -------------------------------------------------------- */

typedef struct poller poller_t;

/* Per-env state (napi_set_instance_data), so that the addon also works in worker threads. */
typedef struct {
    napi_ref poller_ctor;
    poller_t *pollers; /* the open pollers: close(fd) and env teardown close them */
} addon_t;

/*
 * libuv references a poller's memory until its uv_close callback has run, and the JS wrapper until
 * its finalizer has run: the memory is freed when both are done (uv_closed && js_gone).
 */
/*
 * The reading mode of a Poller (DESIGN.md section 1, the streaming data path): a fixed pool of `nslots`
 * slots of `slot_bytes` in one ArrayBuffer, allocated once. While reading is on, not paused, not at EOF or
 * error and a slot is free, the poll stays armed for readable; each readable event reads (one recvmsg over
 * up to `budget` bytes of free slots, again while it fills them all) until EAGAIN, a short read, `budget`
 * bytes or no free slot, then makes one callback with the slots filled. JS owns a filled slot until it
 * releases it (after the write that uses it completed); the pool's memory lives as long as the ArrayBuffer,
 * so a view JS still holds after the reader stopped stays valid.
 */
typedef struct {
    napi_ref cb;          /* onRead(slots, lengths, eof, error) */
    napi_ref pool;        /* the ArrayBuffer over the slots: a strong reference while reading */
    char *base;           /* its memory */
    size_t slot_bytes, budget;
    uint32_t nslots, nfree;
    uint32_t *free;       /* a stack of free slot indices (the last released is reused first: warm) */
    uint8_t *held;        /* held[i]: slot i is JS's until release(i) */
    napi_ref table;       /* the callback's Uint32Array: one event's filled slots, as [slot, length] pairs */
    uint32_t *out;        /* its memory: out[2i] the i-th slot, out[2i + 1] its length */
    bool paused;          /* pauseReading(), or an error until resumeReading() */
    bool eof;             /* recvmsg returned 0: final */
    /* Direct mode (setDirect): each read's bytes go out as WebSocket binary frames of at most frame_bytes,
     * written to direct_fd by one sendmsg before JS runs, while JS keeps *gate nonzero (nothing of its own
     * queued on that connection). */
    int direct_fd;        /* -1: off */
    napi_ref gate_ref;    /* the Int32Array over *gate: held while direct */
    int32_t *gate;
    uint32_t frame_bytes;
    uint64_t direct_writes, direct_bytes, direct_partial;
} reader_t;

struct poller {
    uv_poll_t handle;        /* handle.data == this */
    napi_env env;
    addon_t *addon;
    napi_ref cb;             /* the JS callback: a strong reference while open */
    napi_async_context actx; /* for napi_make_callback */
    int fd;
    int js_events;           /* what start() asked for: one-shot, cleared when it fires */
    int armed;               /* the events the uv_poll is started with now (0: stopped) */
    reader_t *reader;        /* reading mode, or NULL */
    uint64_t wakeups, reads, empty_reads, read_callbacks; /* stats() */
    bool open;               /* uv_close not called yet */
    bool uv_closed;          /* the uv_close callback has run */
    bool js_gone;            /* the wrapper was finalized (or never came to be) */
    poller_t *prev, *next;   /* in addon->pollers while open */
};

static void poller_close(poller_t *p);

/* ---- socket syscalls ---------------------------------------------------------------------------- */

static napi_value js_socket(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t a[3]; /* domain, type, protocol */
    napi_value r;
    REQUIRE(INT_ARGS(a, "domain", "type", "protocol"));
    int fd = socket(a[0], a[1] | SOCK_NONBLOCK | SOCK_CLOEXEC, a[2]);
    if (fd < 0)
        SYSFAIL(env, "socket");
    NAPI_TRY(env, napi_create_int32(env, fd, &r), close(fd); return NULL); /* JS never saw it: close it */
    return r;
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t a[3]; /* domain, type, protocol */
    int sv[2];
    napi_value arr, fd0, fd1;
    REQUIRE(INT_ARGS(a, "domain", "type", "protocol"));
    if (socketpair(a[0], a[1] | SOCK_NONBLOCK | SOCK_CLOEXEC, a[2], sv) < 0)
        SYSFAIL(env, "socketpair");
    if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_int32(env, sv[0], &fd0) != napi_ok ||
        napi_create_int32(env, sv[1], &fd1) != napi_ok || napi_set_element(env, arr, 0, fd0) != napi_ok ||
        napi_set_element(env, arr, 1, fd1) != napi_ok) {
        napi_failed(env, "socketpair result");
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    return arr;
}

/* bind(2) or connect(2) to a SockAddr. */
static napi_value addr_call(napi_env env, napi_callback_info info, bool is_bind) {
    ARGS(2);
    int32_t fd;
    addr_t a;
    const char *name = is_bind ? "bind" : "connect";
    REQUIRE(get_int(env, argv[0], "fd", &fd) && addr_from_js(env, argv[1], name, &a));
    struct sockaddr *sa = (struct sockaddr *)&a.ss;
    if ((is_bind ? bind(fd, sa, a.len) : connect(fd, sa, a.len)) < 0)
        SYSFAIL(env, name);
    return NULL;
}
static napi_value js_bind(napi_env env, napi_callback_info info) { return addr_call(env, info, true); }
static napi_value js_connect(napi_env env, napi_callback_info info) { return addr_call(env, info, false); }

/* listen(2) and shutdown(2): (fd, int). */
static napi_value fd_int_call(napi_env env, napi_callback_info info, int (*call)(int, int), const char *name,
                              const char *arg) {
    ARGS(2);
    int32_t a[2];
    REQUIRE(INT_ARGS(a, "fd", arg));
    if (call(a[0], a[1]) < 0)
        SYSFAIL(env, name);
    return NULL;
}
static napi_value js_listen(napi_env env, napi_callback_info info) {
    return fd_int_call(env, info, listen, "listen", "backlog");
}
static napi_value js_shutdown(napi_env env, napi_callback_info info) {
    return fd_int_call(env, info, shutdown, "shutdown", "how");
}

static napi_value js_accept(napi_env env, napi_callback_info info) {
    ARGS(1);
    int32_t fd;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    napi_value obj, v, remote;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    int nfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (nfd < 0)
        SYSFAIL(env, "accept4");
    /* The new fd is ours until JS holds its number: close it on any failure. */
    NAPI_TRY(env, napi_create_object(env, &obj), close(nfd); return NULL);
    NAPI_TRY(env, napi_create_int32(env, nfd, &v), close(nfd); return NULL);
    NAPI_TRY(env, napi_set_named_property(env, obj, "fd", v), close(nfd); return NULL);
    if (len == 0)
        NAPI_TRY(env, napi_get_null(env, &remote), close(nfd); return NULL);
    else if ((remote = addr_to_js(env, &ss, len)) == NULL) {
        close(nfd);
        return NULL;
    }
    NAPI_TRY(env, napi_set_named_property(env, obj, "remote", remote), close(nfd); return NULL);
    return obj;
}

static napi_value js_send(napi_env env, napi_callback_info info) {
    ARGS(4);
    int32_t fd, flags;
    void *data;
    size_t len;
    addr_t to;
    ssize_t n;
    REQUIRE(get_int(env, argv[0], "fd", &fd) && get_bytes(env, argv[1], "data", &data, &len) &&
            get_int(env, argv[2], "flags", &flags));
    if (is_nullish(env, argv[3])) {
        if ((n = send(fd, data, len, flags | MSG_NOSIGNAL)) < 0)
            SYSFAIL(env, "send");
    } else {
        REQUIRE(addr_from_js(env, argv[3], "sendto", &to));
        if ((n = sendto(fd, data, len, flags | MSG_NOSIGNAL, (struct sockaddr *)&to.ss, to.len)) < 0)
            SYSFAIL(env, "sendto");
    }
    return make_num(env, (double)n);
}

static napi_value js_sendv(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t fd, flags;
    uint32_t count;
    bool is_array = false;
    struct iovec iov[IOV_MAX]; /* 16 KiB; sendmsg refuses more than IOV_MAX entries (EMSGSIZE) */
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    NAPI_CALL(env, napi_is_array(env, argv[1], &is_array));
    if (!is_array)
        FAIL(type_error(env, "chunks", "Array"));
    REQUIRE(get_int(env, argv[2], "flags", &flags));
    NAPI_CALL(env, napi_get_array_length(env, argv[1], &count));
    if (count > IOV_MAX)
        count = IOV_MAX; /* a short write, which the caller must handle anyway */
    for (uint32_t i = 0; i < count; i++) {
        napi_value chunk;
        NAPI_CALL(env, napi_get_element(env, argv[1], i, &chunk));
        REQUIRE(get_bytes(env, chunk, "chunks[i]", &iov[i].iov_base, &iov[i].iov_len));
    }
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = count };
    ssize_t n = sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
    if (n < 0)
        SYSFAIL(env, "sendmsg");
    return make_num(env, (double)n);
}

/* {data, length, truncated, from} after a successful recvmsg that put `got` bytes into buf. */
static napi_value recv_result(napi_env env, const char *buf, size_t got, ssize_t n, const struct msghdr *msg) {
    napi_value obj, data, from;
    void *copy;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, napi_create_buffer_copy(env, got, buf, &copy, &data));
    NAPI_CALL(env, napi_set_named_property(env, obj, "data", data));
    NAPI_CALL(env, set_num(env, obj, "length", (double)n));
    NAPI_CALL(env, set_bool(env, obj, "truncated", (msg->msg_flags & MSG_TRUNC) != 0));
    if (msg->msg_namelen == 0)
        NAPI_CALL(env, napi_get_null(env, &from));
    else if ((from = addr_to_js(env, msg->msg_name, msg->msg_namelen)) == NULL)
        return NULL;
    NAPI_CALL(env, napi_set_named_property(env, obj, "from", from));
    return obj;
}

static napi_value js_recv(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t fd, flags;
    double max;
    char stackbuf[RECV_STACK_BYTES];
    struct sockaddr_storage ss;
    REQUIRE(get_int(env, argv[0], "fd", &fd) && get_integer(env, argv[1], "maxBytes", 0, INT32_MAX, &max) &&
            get_int(env, argv[2], "flags", &flags));
    size_t cap = (size_t)max;
    char *buf = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (buf == NULL)
        FAIL(throw_errno(env, "recvmsg", ENOMEM));
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    struct msghdr msg = { .msg_name = &ss, .msg_namelen = sizeof ss, .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n = recvmsg(fd, &msg, flags);
    int err = errno;
    napi_value result = NULL;
    if (n < 0)
        throw_errno(env, "recvmsg", err);
    else /* with MSG_TRUNC, n can exceed what fit into the buffer */
        result = recv_result(env, buf, (size_t)n < cap ? (size_t)n : cap, n, &msg);
    if (buf != stackbuf)
        free(buf);
    return result;
}

/* recvmsg(2) of up to maxBytes into the caller's buffer, without msg_name: for connected stream sockets,
 * where the kernel names no sender and nothing is truncated. Returns the byte count, and allocates nothing. */
static napi_value js_recv_into(napi_env env, napi_callback_info info) {
    ARGS(4);
    int32_t fd, flags;
    void *data;
    size_t len;
    double max;
    REQUIRE(get_int(env, argv[0], "fd", &fd) && get_bytes(env, argv[1], "into", &data, &len) &&
            get_integer(env, argv[2], "maxBytes", 0, (double)len, &max) && get_int(env, argv[3], "flags", &flags));
    struct iovec iov = { .iov_base = data, .iov_len = (size_t)max };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n = recvmsg(fd, &msg, flags);
    if (n < 0)
        SYSFAIL(env, "recvmsg");
    return make_num(env, (double)n);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
    ARGS(1);
    int32_t fd;
    addon_t *addon = NULL;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    /* Safety net for a poller left open on this fd: libuv would otherwise act on whatever socket later
     * gets the same number (its uv_close does EPOLL_CTL_DEL by number; a start after the close aborts). */
    NAPI_CALL(env, napi_get_instance_data(env, (void **)&addon));
    for (poller_t *p = addon->pollers, *next; p != NULL; p = next) {
        next = p->next;
        if (p->fd == fd)
            poller_close(p);
    }
    if (close(fd) < 0 && errno != EINTR) /* Linux frees the fd even on EINTR: a retry could hit another */
        SYSFAIL(env, "close");
    return NULL;
}

/* getsockname(2) or getpeername(2). */
static napi_value name_call(napi_env env, napi_callback_info info, bool peer) {
    ARGS(1);
    int32_t fd;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    struct sockaddr *sa = (struct sockaddr *)&ss;
    if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) < 0)
        SYSFAIL(env, peer ? "getpeername" : "getsockname");
    return addr_to_js(env, &ss, len);
}
static napi_value js_getsockname(napi_env env, napi_callback_info info) { return name_call(env, info, false); }
static napi_value js_getpeername(napi_env env, napi_callback_info info) { return name_call(env, info, true); }

/* ---- socket options and ioctl ------------------------------------------------------------------- */

static napi_value js_getsockopt_int(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t a[3]; /* fd, level, name */
    int value = 0;
    socklen_t len = sizeof value;
    REQUIRE(INT_ARGS(a, "fd", "level", "name"));
    if (getsockopt(a[0], a[1], a[2], &value, &len) < 0)
        SYSFAIL(env, "getsockopt");
    return make_num(env, value);
}

static napi_value js_setsockopt_int(napi_env env, napi_callback_info info) {
    ARGS(4);
    int32_t a[4]; /* fd, level, name, value */
    REQUIRE(INT_ARGS(a, "fd", "level", "name", "value"));
    if (setsockopt(a[0], a[1], a[2], &a[3], sizeof a[3]) < 0)
        SYSFAIL(env, "setsockopt");
    return NULL;
}

static napi_value js_getsockopt_linger(napi_env env, napi_callback_info info) {
    ARGS(1);
    int32_t fd;
    struct linger l = { 0, 0 };
    socklen_t len = sizeof l;
    napi_value obj;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) < 0)
        SYSFAIL(env, "getsockopt");
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, set_bool(env, obj, "onoff", l.l_onoff != 0));
    NAPI_CALL(env, set_num(env, obj, "linger", l.l_linger));
    return obj;
}

static napi_value js_setsockopt_linger(napi_env env, napi_callback_info info) {
    ARGS(2);
    int32_t fd, secs;
    bool onoff;
    napi_value v;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    if (!is_type(env, argv[1], napi_object))
        FAIL(type_error(env, "value", "object"));
    NAPI_CALL(env, napi_get_named_property(env, argv[1], "onoff", &v));
    if (!is_type(env, v, napi_boolean))
        FAIL(type_error(env, "value.onoff", "boolean"));
    NAPI_CALL(env, napi_get_value_bool(env, v, &onoff));
    NAPI_CALL(env, napi_get_named_property(env, argv[1], "linger", &v));
    REQUIRE(get_int(env, v, "value.linger", &secs));
    struct linger l = { onoff, secs };
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0)
        SYSFAIL(env, "setsockopt");
    return NULL;
}

static napi_value js_getsockopt_timeval(napi_env env, napi_callback_info info) {
    ARGS(3);
    int32_t a[3]; /* fd, level, name */
    struct timeval tv = { 0, 0 };
    socklen_t len = sizeof tv;
    REQUIRE(INT_ARGS(a, "fd", "level", "name"));
    if (getsockopt(a[0], a[1], a[2], &tv, &len) < 0)
        SYSFAIL(env, "getsockopt");
    /* Exact, hence possibly fractional: the kernel keeps the timeout in jiffies. */
    return make_num(env, (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0);
}

static napi_value js_setsockopt_timeval(napi_env env, napi_callback_info info) {
    ARGS(4);
    int32_t a[3]; /* fd, level, name */
    double ms;
    REQUIRE(INT_ARGS(a, "fd", "level", "name"));
    if (!is_type(env, argv[3], napi_number))
        FAIL(type_error(env, "ms", "number"));
    NAPI_CALL(env, napi_get_value_double(env, argv[3], &ms));
    if (!(ms >= 0 && ms <= 1e15))
        FAIL(range_error(env, "ms", 0, 1e15));
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000.0) };
    tv.tv_usec = (suseconds_t)((ms - (double)tv.tv_sec * 1000.0) * 1000.0);
    if (setsockopt(a[0], a[1], a[2], &tv, sizeof tv) < 0)
        SYSFAIL(env, "setsockopt");
    return NULL;
}

/* TcpInfo property -> glibc's struct tcp_info field (each a u8 or a u32). */
#define TI(js, field) { js, offsetof(struct tcp_info, field), sizeof(((struct tcp_info *)0)->field) }
static const struct {
    const char *name;
    size_t offset, size;
} tcpi_fields[] = {
    TI("state", tcpi_state), TI("caState", tcpi_ca_state), TI("retransmits", tcpi_retransmits),
    TI("probes", tcpi_probes), TI("backoff", tcpi_backoff), TI("rto", tcpi_rto), TI("ato", tcpi_ato),
    TI("sndMss", tcpi_snd_mss), TI("rcvMss", tcpi_rcv_mss), TI("unacked", tcpi_unacked),
    TI("sacked", tcpi_sacked), TI("lost", tcpi_lost), TI("retrans", tcpi_retrans),
    TI("lastDataSent", tcpi_last_data_sent), TI("lastDataRecv", tcpi_last_data_recv), TI("pmtu", tcpi_pmtu),
    TI("rcvSsthresh", tcpi_rcv_ssthresh), TI("rtt", tcpi_rtt), TI("rttvar", tcpi_rttvar),
    TI("sndSsthresh", tcpi_snd_ssthresh), TI("sndCwnd", tcpi_snd_cwnd), TI("advmss", tcpi_advmss),
    TI("reordering", tcpi_reordering), TI("totalRetrans", tcpi_total_retrans),
};
#undef TI

static napi_value js_tcp_info(napi_env env, napi_callback_info info) {
    ARGS(1);
    int32_t fd;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    napi_value obj;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    memset(&ti, 0, sizeof ti); /* an older kernel may fill less than glibc's struct: the rest reads 0 */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        SYSFAIL(env, "getsockopt");
    NAPI_CALL(env, napi_create_object(env, &obj));
    for (size_t i = 0; i < sizeof tcpi_fields / sizeof tcpi_fields[0]; i++) {
        const unsigned char *src = (const unsigned char *)&ti + tcpi_fields[i].offset;
        uint32_t v = *src;
        if (tcpi_fields[i].size == sizeof v)
            memcpy(&v, src, sizeof v);
        NAPI_CALL(env, set_num(env, obj, tcpi_fields[i].name, v));
    }
    return obj;
}

static napi_value js_ioctl_int(napi_env env, napi_callback_info info) {
    ARGS(2);
    int32_t fd;
    double request;
    int value = 0;
    /* Requests are unsigned 32-bit codes; accept them written as signed ints too. */
    REQUIRE(get_int(env, argv[0], "fd", &fd) && get_integer(env, argv[1], "request", INT32_MIN, UINT32_MAX, &request));
    if (ioctl(fd, (unsigned long)(uint32_t)(int64_t)request, &value) < 0)
        SYSFAIL(env, "ioctl");
    return make_num(env, value);
}

static napi_value js_fd_count(napi_env env, napi_callback_info info) {
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    int count = 0;
    (void)info;
    if (dir == NULL)
        SYSFAIL(env, "opendir");
    errno = 0;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(dir)) /* not ".", ".." nor the listing's fd */
            count++;
    int err = errno;
    closedir(dir);
    if (err != 0)
        FAIL(throw_errno(env, "readdir", err));
    return make_num(env, count);
}

/* ---- sock_diag: a Unix listener's queues ---------------------------------------------------------- */

/* A reply buffer with the alignment NLMSG_* expects. */
typedef union {
    struct nlmsghdr nlh;
    char buf[8192];
} diag_reply_t;

/*
 * One SOCK_DIAG_BY_FAMILY exact lookup on the NETLINK_SOCK_DIAG socket `nl`: sends `req` (req_len bytes,
 * the family's request struct) under sequence `seq` and reads the answer into `reply`. Returns 1 with *msg
 * at the first answer of at least `min_len` payload bytes, 0 when the kernel knows no such socket (ENOENT,
 * which a kernel without that family's diag handler answers too), or -errno with *sys the syscall through
 * which the failure came.
 */
static int diag_exchange(int nl, const void *req, size_t req_len, uint32_t seq, size_t min_len, diag_reply_t *reply,
                         const void **msg, const char **sys) {
    struct nlmsghdr nlh = {
        .nlmsg_len = (uint32_t)NLMSG_LENGTH(req_len),
        .nlmsg_type = SOCK_DIAG_BY_FAMILY,
        .nlmsg_flags = NLM_F_REQUEST, /* no NLM_F_DUMP: an exact lookup; no NLM_F_ACK: errors come anyway */
        .nlmsg_seq = seq,
    };
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK }; /* nl_pid 0: the kernel */
    struct iovec out[2] = { { .iov_base = &nlh, .iov_len = NLMSG_HDRLEN }, { .iov_base = (void *)req, .iov_len = req_len } };
    struct msghdr mh = { .msg_name = &kernel, .msg_namelen = sizeof kernel, .msg_iov = out, .msg_iovlen = 2 };
    ssize_t got;

    *sys = "sendmsg";
    if (sendmsg(nl, &mh, 0) < 0)
        return -errno;
    /* The kernel has answered by now (netlink to the kernel is synchronous): the socket is non-blocking
     * only so that a missing answer is an EAGAIN, never an event loop blocked for good. */
    struct iovec in = { .iov_base = reply->buf, .iov_len = sizeof reply->buf };
    mh = (struct msghdr){ .msg_name = &kernel, .msg_namelen = sizeof kernel, .msg_iov = &in, .msg_iovlen = 1 };
    *sys = "recvmsg";
    if ((got = recvmsg(nl, &mh, 0)) < 0)
        return -errno;
    if (mh.msg_flags & MSG_TRUNC)
        return -EMSGSIZE;
    int len = (int)got;
    for (const struct nlmsghdr *h = &reply->nlh; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq)
            continue;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e))
                return -EPROTO;
            if (e->error == -ENOENT)
                return 0;
            return e->error < 0 ? e->error : -EPROTO; /* 0 would be an ACK, which was not asked for */
        }
        if (h->nlmsg_type == NLMSG_DONE)
            return 0;
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(min_len))
            continue;
        *msg = NLMSG_DATA(h);
        return 1;
    }
    return -EPROTO;
}

#define UNIX_DIAG_SEQ 1
#define TCP_LISTEN_STATE 10 /* include/net/tcp_states.h: AF_UNIX listeners are in TCP_LISTEN too */

/*
 * One SOCK_DIAG_BY_FAMILY exchange on the NETLINK_SOCK_DIAG socket `nl`, for the AF_UNIX socket whose
 * inode is `ino` (an exact lookup: the kernel answers with that socket's unix_diag_msg or an error, during
 * the sendmsg). Returns 1 with *rq and *wq from UNIX_DIAG_RQLEN, 0 when the kernel knows no such socket
 * (ENOENT), or -errno with *sys the syscall through which the failure came.
 */
static int unix_diag_rqlen(int nl, uint32_t ino, uint32_t *rq, uint32_t *wq, const char **sys) {
    struct unix_diag_req req = {
        .sdiag_family = AF_UNIX,
        .udiag_states = 1u << TCP_LISTEN_STATE,
        .udiag_ino = ino,
        .udiag_show = UDIAG_SHOW_RQLEN,
        .udiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE },
    };
    diag_reply_t reply;
    const void *found;
    int r = diag_exchange(nl, &req, sizeof req, UNIX_DIAG_SEQ, sizeof(struct unix_diag_msg), &reply, &found, sys);
    if (r <= 0)
        return r;
    const struct unix_diag_msg *m = found;
    const struct nlmsghdr *h = (const struct nlmsghdr *)((const char *)m - NLMSG_HDRLEN);
    if (m->udiag_family != AF_UNIX || m->udiag_ino != ino)
        return -EPROTO;
    int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
    for (const struct rtattr *a = (const struct rtattr *)((const char *)m + NLMSG_ALIGN(sizeof *m)); RTA_OK(a, alen);
         a = RTA_NEXT(a, alen)) {
        struct unix_diag_rqlen q;
        if (a->rta_type != UNIX_DIAG_RQLEN || RTA_PAYLOAD(a) < sizeof q)
            continue;
        memcpy(&q, RTA_DATA(a), sizeof q);
        *rq = q.udiag_rqueue;
        *wq = q.udiag_wqueue;
        return 1;
    }
    return -EPROTO; /* the socket, without the attribute asked for */
}

static napi_value js_unix_queue(napi_env env, napi_callback_info info) {
    ARGS(1);
    int32_t fd;
    struct stat st;
    uint32_t rq = 0, wq = 0;
    const char *sys = "socket";
    napi_value obj;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    if (fstat(fd, &st) < 0)
        SYSFAIL(env, "fstat");
    if (!S_ISSOCK(st.st_mode)) /* its inode number means nothing to sock_diag: no syscall refuses it, we do */
        FAIL(throw_errno(env, "unixQueue", ENOTSOCK));
    if (st.st_ino > UINT32_MAX) { /* udiag_ino is 32 bits, as are sockfs inode numbers: no such socket */
        NAPI_CALL(env, napi_get_null(env, &obj));
        return obj;
    }
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        SYSFAIL(env, "socket");
    int r = unix_diag_rqlen(nl, (uint32_t)st.st_ino, &rq, &wq, &sys);
    close(nl); /* on every path, before anything can throw */
    if (r < 0)
        FAIL(throw_errno(env, sys, -r));
    if (r == 0) {
        NAPI_CALL(env, napi_get_null(env, &obj));
        return obj;
    }
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, set_num(env, obj, "rqueue", rq));
    NAPI_CALL(env, set_num(env, obj, "wqueue", wq));
    return obj;
}

/* ---- sock_diag: the TCP state of a connection, by its address pair -------------------------------- */

#define TCP_DIAG_SEQ 2

/* The 16 bytes of an inet sockaddr's address in inet_diag's layout for `family`: an IPv4 address in the
 * first word (AF_INET) or as ::ffff:a.b.c.d (AF_INET6); an IPv6 address as is. */
static void diag_addr(const addr_t *a, int family, uint32_t out[4]) {
    memset(out, 0, 4 * sizeof out[0]);
    if (a->ss.ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
        return;
    }
    const struct in_addr *in = &((const struct sockaddr_in *)&a->ss)->sin_addr;
    if (family == AF_INET) {
        memcpy(&out[0], in, 4);
    } else {
        out[2] = htonl(0xffff);
        memcpy(&out[3], in, 4);
    }
}

static uint16_t inet_port(const addr_t *a) { /* network byte order */
    return a->ss.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&a->ss)->sin6_port
                                       : ((const struct sockaddr_in *)&a->ss)->sin_port;
}

/* An inet_diag id address of `family` as 16 bytes of the IPv6 form (IPv4 as ::ffff:a.b.c.d), to compare. */
static void diag_addr_v6(const uint32_t in[4], int family, uint32_t out[4]) {
    if (family == AF_INET) {
        out[0] = out[1] = 0;
        out[2] = htonl(0xffff);
        out[3] = in[0];
    } else {
        memcpy(out, in, 4 * sizeof out[0]);
    }
}

/*
 * One SOCK_DIAG_BY_FAMILY exchange on the NETLINK_SOCK_DIAG socket `nl` for the TCP connection `req`
 * describes (an exact lookup, no NLM_F_DUMP: the kernel's inet_diag_find_one_icsk, which finds full,
 * TIME_WAIT and request sockets; it answers during the sendmsg). Returns 1 with *state = idiag_state,
 * 0 when the kernel knows no such connection (ENOENT, or the lookup's listener fallback found a listener
 * on the local port, whose id is not the pair asked for), or -errno with *sys the syscall through which
 * the failure came.
 */
static int tcp_diag_lookup(int nl, const struct inet_diag_req_v2 *req, uint8_t *state, const char **sys) {
    diag_reply_t reply;
    const void *found;
    uint32_t want_src[4], want_dst[4], src[4], dst[4];
    int r = diag_exchange(nl, req, sizeof *req, TCP_DIAG_SEQ, sizeof(struct inet_diag_msg), &reply, &found, sys);
    if (r <= 0)
        return r;
    const struct inet_diag_msg *m = found;
    if (m->idiag_family != AF_INET && m->idiag_family != AF_INET6)
        return -EPROTO;
    /* The socket's own id (an AF_INET6 socket's v4-mapped addresses, an AF_INET one's in the first word):
     * anything but the pair asked for is the listener the lookup falls back to. */
    diag_addr_v6(req->id.idiag_src, req->sdiag_family, want_src);
    diag_addr_v6(req->id.idiag_dst, req->sdiag_family, want_dst);
    diag_addr_v6(m->id.idiag_src, m->idiag_family, src);
    diag_addr_v6(m->id.idiag_dst, m->idiag_family, dst);
    if (m->id.idiag_sport != req->id.idiag_sport || m->id.idiag_dport != req->id.idiag_dport ||
        memcmp(src, want_src, sizeof src) != 0 || memcmp(dst, want_dst, sizeof dst) != 0)
        return 0;
    *state = m->idiag_state;
    return 1;
}

/* An AF_INET or AF_INET6 SockAddr for tcpDiagState (anything else: EAFNOSUPPORT, without a syscall). */
static bool tcp_diag_addr_from_js(napi_env env, napi_value obj, addr_t *a) {
    if (!addr_from_js(env, obj, "tcpDiagState", a))
        return false;
    if (a->ss.ss_family != AF_INET && a->ss.ss_family != AF_INET6)
        return throw_errno(env, "tcpDiagState", EAFNOSUPPORT);
    return true;
}

static napi_value js_tcp_diag_state(napi_env env, napi_callback_info info) {
    ARGS(2);
    addr_t local, remote;
    struct inet_diag_req_v2 req;
    const char *sys = "socket";
    uint8_t state = 0;
    napi_value out;
    REQUIRE(tcp_diag_addr_from_js(env, argv[0], &local));
    REQUIRE(tcp_diag_addr_from_js(env, argv[1], &remote));
    memset(&req, 0, sizeof req);
    /* Both IPv4: an AF_INET lookup. Otherwise AF_INET6, an IPv4 side as ::ffff:a.b.c.d: with both sides
     * v4-mapped the kernel looks the pair up in the IPv4 table, where dual-stack sockets are too. */
    req.sdiag_family = local.ss.ss_family == AF_INET && remote.ss.ss_family == AF_INET ? AF_INET : AF_INET6;
    req.sdiag_protocol = IPPROTO_TCP;
    req.idiag_states = ~0u; /* the exact lookup does not filter on it; all, should it ever */
    req.id.idiag_sport = inet_port(&local);
    req.id.idiag_dport = inet_port(&remote);
    diag_addr(&local, req.sdiag_family, req.id.idiag_src);
    diag_addr(&remote, req.sdiag_family, req.id.idiag_dst);
    /* A link-local pair: the socket is bound to the scope's interface, and the lookup must name it. */
    req.id.idiag_if = local.ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&local.ss)->sin6_scope_id : 0;
    req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        SYSFAIL(env, "socket");
    int r = tcp_diag_lookup(nl, &req, &state, &sys);
    close(nl); /* on every path, before anything can throw */
    if (r < 0)
        FAIL(throw_errno(env, sys, -r));
    if (r == 0) {
        NAPI_CALL(env, napi_get_null(env, &out));
        return out;
    }
    return make_num(env, state);
}

/* ---- Poller: a one-shot uv_poll_t, with a reading mode ------------------------------------------ */

/*
 * One uv_poll per fd (libuv allows no more), shared by two users:
 * - JS waits (start/stop): one-shot. The events start() asked for are cleared when one of them fires,
 *   before JS runs; with nothing else armed the poll is stopped (uv_poll is level-triggered: left armed,
 *   it would call back on every loop iteration until the fd is drained, which JS may do much later).
 * - the reader (startReading...): persistent readable interest while it can read (reader_can_read).
 * poller_update arms the union, and calls into libuv only when that union changes.
 */

#define READER_MAX_SLOTS 1024
#define READER_MAX_SLOT_BYTES (64u * 1024 * 1024)
#define READER_MAX_POOL_BYTES (1024.0 * 1024 * 1024)
#define READER_MAX_IOV 64

static bool reader_can_read(const reader_t *r) {
    return r != NULL && !r->paused && !r->eof && r->nfree > 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Arms the poll for the JS waits' events plus readable while the reader can read; 0 or a libuv error. */
static int poller_update(poller_t *p) {
    if (!p->open)
        return 0;
    int want = p->js_events | (reader_can_read(p->reader) ? UV_READABLE : 0);
    if (want == p->armed)
        return 0;
    if (want == 0) {
        uv_poll_stop(&p->handle);
        p->armed = 0;
        return 0;
    }
    int rc = uv_poll_start(&p->handle, want, on_poll); /* re-arms with the new events if started */
    p->armed = rc < 0 ? 0 : want;
    return rc;
}

/* Ends the reading mode; the pool's memory goes when JS drops its last view of it. */
static void reader_free(poller_t *p) {
    reader_t *r = p->reader;
    if (r == NULL)
        return;
    p->reader = NULL;
    if (r->cb != NULL)
        napi_delete_reference(p->env, r->cb);
    if (r->pool != NULL)
        napi_delete_reference(p->env, r->pool);
    if (r->gate_ref != NULL)
        napi_delete_reference(p->env, r->gate_ref);
    if (r->table != NULL)
        napi_delete_reference(p->env, r->table);
    free(r->free);
    free(r->held);
    free(r);
}

static void on_uv_closed(uv_handle_t *h) {
    poller_t *p = h->data;
    p->uv_closed = true;
    if (p->js_gone)
        free(p);
}

/* Idempotent. No JS callback follows: libuv never calls poll_cb for a closing handle. */
static void poller_close(poller_t *p) {
    if (!p->open)
        return;
    p->open = false;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->addon->pollers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    uv_close((uv_handle_t *)&p->handle, on_uv_closed); /* stops the poll and takes the fd out of epoll */
    p->armed = 0;
    p->js_events = 0;
    reader_free(p);
    if (p->cb != NULL)
        napi_delete_reference(p->env, p->cb);
    if (p->actx != NULL)
        napi_async_destroy(p->env, p->actx);
    p->cb = NULL;
    p->actx = NULL;
}

/* The wrapper was garbage-collected: close the handle if JS did not; the memory goes once libuv is done. */
static void poller_finalize(napi_env env, void *data, void *hint) {
    poller_t *p = data;
    (void)env, (void)hint;
    p->js_gone = true;
    poller_close(p);
    if (p->uv_closed)
        free(p);
}

/*
 * One readable event of the reader: recvmsg into free slots until EAGAIN, a short read (the queue is
 * drained), EOF, an error, `budget` bytes or no free slot. Fills r->out (pairs); returns the count.
 */
static uint32_t reader_read(poller_t *p, reader_t *r, bool *eof, int *err) {
    size_t total = 0;
    uint32_t count = 0;
    *eof = false;
    *err = 0;
    while (r->nfree > 0 && total < r->budget) {
        struct iovec iov[READER_MAX_IOV];
        uint32_t idx[READER_MAX_IOV];
        uint32_t k = 0;
        while (k < READER_MAX_IOV && r->nfree > 0 && (size_t)k * r->slot_bytes < r->budget - total) {
            uint32_t s = r->free[--r->nfree];
            idx[k] = s;
            iov[k].iov_base = r->base + (size_t)s * r->slot_bytes;
            iov[k].iov_len = r->slot_bytes;
            k++;
        }
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = k };
        ssize_t n = recvmsg(p->fd, &msg, MSG_DONTWAIT);
        int e = errno;
        p->reads++;
        size_t left = n > 0 ? (size_t)n : 0;
        uint32_t used = 0;
        for (; used < k && left > 0; used++) {
            size_t take = left < r->slot_bytes ? left : r->slot_bytes;
            r->held[idx[used]] = 1;
            r->out[2 * count] = idx[used];
            r->out[2 * count++ + 1] = (uint32_t)take;
            left -= take;
        }
        for (uint32_t i = k; i > used; i--) /* unused slots back, so that the next pop takes them in order */
            r->free[r->nfree++] = idx[i - 1];
        if (n > 0) {
            total += (size_t)n;
            if ((size_t)n < (size_t)k * r->slot_bytes)
                break; /* short: the receive queue is drained */
            continue;
        }
        if (n == 0) {
            *eof = true; /* a stream's EOF: final */
            break;
        }
        if (e == EINTR)
            continue;
        if (e != EAGAIN && e != EWOULDBLOCK)
            *err = e;
        break;
    }
    return count;
}

/* Frames per direct write at most (a header and a payload iovec each): a read of the 1 MiB budget in 16 KiB
 * frames is 64, plus one per slot for its short tail. */
#define DIRECT_MAX_FRAMES 256

/*
 * Direct mode: the read's slots as WebSocket binary frames (server to client: FIN, opcode 2, unmasked) of at
 * most frame_bytes each, in one sendmsg to direct_fd, if JS's gate is open. Returns the bytes written,
 * headers included (0 when the gate is shut, the socket's buffer is full or the write failed: JS then sends
 * everything itself, and its own write meets the error). JS writes what is left of a frame written in part.
 */
static size_t reader_direct(reader_t *r, uint32_t count) {
    if (r->direct_fd < 0 || r->gate == NULL || __atomic_load_n(r->gate, __ATOMIC_RELAXED) == 0 || count == 0)
        return 0;
    struct iovec iov[2 * DIRECT_MAX_FRAMES];
    uint8_t hdr[DIRECT_MAX_FRAMES][4];
    size_t k = 0, f = 0;
    for (uint32_t i = 0; i < count; i++) {
        char *at = r->base + (size_t)r->out[2 * i] * r->slot_bytes;
        size_t len = r->out[2 * i + 1];
        for (size_t off = 0; off < len; off += r->frame_bytes) {
            size_t n = len - off < r->frame_bytes ? len - off : r->frame_bytes;
            if (f == DIRECT_MAX_FRAMES)
                return 0; /* more frames than fit: JS sends them */
            uint8_t *h = hdr[f++];
            h[0] = 0x82;
            if (n < 126) {
                h[1] = (uint8_t)n;
                iov[k++] = (struct iovec){ h, 2 };
            } else { /* frame_bytes <= 65535 (setDirect) */
                h[1] = 126;
                h[2] = (uint8_t)(n >> 8);
                h[3] = (uint8_t)n;
                iov[k++] = (struct iovec){ h, 4 };
            }
            iov[k++] = (struct iovec){ at + off, n };
        }
    }
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = k };
    ssize_t w;
    do
        w = sendmsg(r->direct_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w <= 0)
        return 0;
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
        total += iov[i].iov_len;
    r->direct_writes++;
    r->direct_bytes += (uint64_t)w;
    if ((size_t)w < total)
        r->direct_partial++;
    return (size_t)w;
}

/* Calls JS through napi_make_callback (see on_poll); an exception goes to process 'uncaughtException'. */
static void poller_call(poller_t *p, napi_value cb, size_t argc, napi_value *argv) {
    napi_env env = p->env;
    napi_value global, result, exc;
    /* napi_make_callback, not napi_call_function: the nextTicks and microtasks the callback queues then
     * run as it returns, as after Node's own I/O callbacks, not after the whole epoll batch. */
    if (napi_get_global(env, &global) == napi_ok &&
        napi_make_callback(env, p->actx, global, cb, argc, argv, &result) == napi_pending_exception &&
        napi_get_and_clear_last_exception(env, &exc) == napi_ok)
        napi_fatal_exception(env, exc); /* no JS caller to throw to */
}

/*
 * The reader's callback: onRead(table, count, eof, error, written), the slots and lengths as `count` pairs at
 * the start of the reader's one Uint32Array (no array made per callback: through N-API, two arrays and their
 * elements cost about as much as the callback's own JS). Nothing of the reader is used after it.
 */
static void reader_deliver(poller_t *p, reader_t *r, uint32_t count, bool eof, int err, size_t written) {
    napi_env env = p->env;
    napi_value cb, argv[5];
    bool ok = napi_get_reference_value(env, r->cb, &cb) == napi_ok && cb != NULL &&
              napi_get_reference_value(env, r->table, &argv[0]) == napi_ok && argv[0] != NULL &&
              napi_create_uint32(env, count, &argv[1]) == napi_ok &&
              napi_get_boolean(env, eof, &argv[2]) == napi_ok &&
              (err != 0 ? (argv[3] = errno_error(env, "recvmsg", err)) != NULL : napi_get_null(env, &argv[3]) == napi_ok) &&
              napi_create_double(env, (double)written, &argv[4]) == napi_ok;
    if (!ok) { /* JS never sees these slots: take them back (the bytes are lost, as with any failed read) */
        bool pending = false;
        for (uint32_t i = 0; i < count; i++) {
            r->held[r->out[2 * i]] = 0;
            r->free[r->nfree++] = r->out[2 * i];
        }
        poller_update(p);
        if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
            napi_value exc;
            if (napi_get_and_clear_last_exception(env, &exc) == napi_ok)
                napi_fatal_exception(env, exc);
        }
        return;
    }
    p->read_callbacks++;
    poller_call(p, cb, 5, argv);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    poller_t *p = h->data;
    napi_env env = p->env;
    napi_handle_scope scope;
    p->wakeups++;
    /* libuv reports POLLERR as status UV_EBADF with no events, and stops the handle itself: report both
     * events, so that every waiter retries its syscall and gets the real errno from it (and the reader
     * reads it: data still queued first, then the error). */
    if (status < 0) {
        p->armed = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (!p->open)
        return;
    int js = p->js_events & events;
    if (js)
        p->js_events = 0; /* one-shot: cleared before JS runs */
    reader_t *r = p->reader;
    uint32_t count = 0;
    bool eof = false, deliver = false;
    int err = 0;
    size_t written = 0;
    if (reader_can_read(r) && (events & UV_READABLE)) {
        count = reader_read(p, r, &eof, &err);
        written = reader_direct(r, count);
        if (eof)
            r->eof = true;
        if (err != 0)
            r->paused = true; /* until JS resumes: it decides whether to read on (ECONNRESET, then EOF) */
        deliver = count > 0 || eof || err != 0;
        if (!deliver)
            p->empty_reads++;
    }
    poller_update(p); /* before JS runs: readable stays armed only while the reader can read */
    if (!deliver && !js)
        return;
    if (napi_open_handle_scope(env, &scope) != napi_ok)
        return;
    if (deliver)
        reader_deliver(p, r, count, eof, err, written); /* JS may stop the reader or close the poller meanwhile */
    if (js && p->open && p->cb != NULL) {
        napi_value cb, argv[2];
        if (napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb != NULL &&
            napi_create_int32(env, status, &argv[0]) == napi_ok &&
            napi_create_int32(env, status < 0 ? UV_READABLE | UV_WRITABLE : js, &argv[1]) == napi_ok)
            poller_call(p, cb, 2, argv);
    }
    napi_close_handle_scope(env, scope);
}

static poller_t *this_poller(napi_env env, napi_callback_info info, napi_value *argv, size_t n) {
    napi_value self;
    poller_t *p = NULL;
    NAPI_CALL(env, napi_get_cb_info(env, info, &n, argv, &self, NULL));
    if (napi_unwrap(env, self, (void **)&p) != napi_ok || p == NULL)
        FAIL(napi_throw_type_error(env, "ERR_INVALID_THIS", "Value of \"this\" must be of type Poller"));
    return p;
}

static napi_value js_poller_start(napi_env env, napi_callback_info info) {
    napi_value argv[1];
    poller_t *p = this_poller(env, info, argv, 1);
    int32_t events;
    const int all = UV_READABLE | UV_WRITABLE | UV_DISCONNECT | UV_PRIORITIZED;
    REQUIRE(p != NULL && get_int(env, argv[0], "events", &events));
    if (events & ~all) /* libuv asserts on unknown bits */
        FAIL(range_error(env, "events", 0, all));
    if (!p->open)
        FAIL(throw_errno(env, "uv_poll_start", EBADF));
    int before = p->js_events;
    p->js_events = events;
    int rc = poller_update(p);
    if (rc < 0) {
        p->js_events = before;
        FAIL(throw_errno(env, "uv_poll_start", -rc));
    }
    return NULL;
}

static napi_value js_poller_stop(napi_env env, napi_callback_info info) {
    poller_t *p = this_poller(env, info, NULL, 0);
    if (p != NULL && p->open) {
        p->js_events = 0;
        poller_update(p);
    }
    return NULL;
}

static napi_value js_poller_close(napi_env env, napi_callback_info info) {
    poller_t *p = this_poller(env, info, NULL, 0);
    if (p != NULL)
        poller_close(p);
    return NULL;
}

/* Bytes of reader pools mapped and not unmapped yet, process-wide (readerPoolBytes()). */
static size_t pools_mapped;

/* The pool's ArrayBuffer was collected (Node runs this after the GC, on the JS thread): unmap it. */
static void pool_unmap(napi_env env, void *data, void *hint) {
    size_t len = (size_t)(uintptr_t)hint;
    (void)env;
    munmap(data, len);
    __atomic_sub_fetch(&pools_mapped, len, __ATOMIC_RELAXED);
}

/*
 * A reader's pool: anonymous mmap'd memory under an external ArrayBuffer that munmaps it when collected.
 * Fresh pages are zero and cost nothing until a read fills them, and freeing returns them to the system.
 * With V8's own ArrayBuffer (calloc), glibc's sliding mmap threshold put every pool after the first one
 * freed on the heap, where calloc clears all of it: 6-8 ms for a 13.5 MiB pool, which the first bytes of
 * each new stream waited for. Runtimes that refuse external buffers (a V8 sandbox) get V8's.
 */
static napi_status create_pool(napi_env env, size_t len, void **data, napi_value *ab) {
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem != MAP_FAILED) {
        napi_status st = napi_create_external_arraybuffer(env, mem, len, pool_unmap, (void *)(uintptr_t)len, ab);
        if (st == napi_ok) {
            __atomic_add_fetch(&pools_mapped, len, __ATOMIC_RELAXED);
            *data = mem;
            return napi_ok;
        }
        munmap(mem, len);
        if (st != napi_no_external_buffers_allowed)
            return st;
    }
    return napi_create_arraybuffer(env, len, data, ab);
}

/* detachPool(arrayBuffer): a stopped reader's pool, every slot back: detach it (views read empty), unmap it. */
static napi_value js_detach_pool(napi_env env, napi_callback_info info) {
    ARGS(1);
    bool is_ab = false;
    if (napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab)
        FAIL(type_error(env, "pool", "ArrayBuffer"));
    NAPI_CALL(env, napi_detach_arraybuffer(env, argv[0]));
    return NULL;
}

/* keepFreedHeap(trimBytes, mmapBytes): mallopt(M_TRIM_THRESHOLD) and mallopt(M_MMAP_THRESHOLD) (glibc only). */
static napi_value js_keep_freed_heap(napi_env env, napi_callback_info info) {
    ARGS(2);
    double trim, mmap_at;
    REQUIRE(get_integer(env, argv[0], "trimBytes", 0, INT32_MAX, &trim) &&
            get_integer(env, argv[1], "mmapBytes", 0, 32 * 1024 * 1024, &mmap_at));
#ifdef __GLIBC__
    if (mallopt(M_TRIM_THRESHOLD, (int)trim) != 1 || mallopt(M_MMAP_THRESHOLD, (int)mmap_at) != 1)
        FAIL(throw_error(env, "EINVAL", EINVAL, "mallopt", "the C library refused the malloc settings"));
#endif
    return NULL; /* other C libraries: their own policy stays */
}

static napi_value js_reader_pool_bytes(napi_env env, napi_callback_info info) {
    (void)info;
    return make_num(env, (double)__atomic_load_n(&pools_mapped, __ATOMIC_RELAXED));
}

/* startReading(slots, slotBytes, budgetBytes, onRead): the pool's ArrayBuffer. */
static napi_value js_poller_start_reading(napi_env env, napi_callback_info info) {
    napi_value argv[4], ab;
    poller_t *p = this_poller(env, info, argv, 4);
    double slots, slot_bytes, budget;
    int type = 0;
    socklen_t len = sizeof type;
    void *data = NULL;
    REQUIRE(p != NULL && get_integer(env, argv[0], "slots", 1, READER_MAX_SLOTS, &slots) &&
            get_integer(env, argv[1], "slotBytes", 1, READER_MAX_SLOT_BYTES, &slot_bytes) &&
            get_integer(env, argv[2], "budgetBytes", 1, UINT32_MAX, &budget));
    if (!is_type(env, argv[3], napi_function))
        FAIL(type_error(env, "onRead", "function"));
    if (slots * slot_bytes > READER_MAX_POOL_BYTES)
        FAIL(range_error(env, "slots * slotBytes", 1, READER_MAX_POOL_BYTES));
    if (!p->open)
        FAIL(throw_errno(env, "uv_poll_start", EBADF));
    if (p->reader != NULL)
        FAIL(napi_throw_error(env, "ERR_INVALID_STATE", "startReading: this Poller is already reading"));
    /* A stream only: a datagram per slot would need one recvmsg per slot, and its EOF is no EOF. */
    if (getsockopt(p->fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        SYSFAIL(env, "getsockopt");
    if (type != SOCK_STREAM)
        FAIL(throw_error(env, "EOPNOTSUPP", EOPNOTSUPP, "startReading", "reading mode is for SOCK_STREAM sockets"));
    reader_t *r = calloc(1, sizeof *r);
    uint32_t n = (uint32_t)slots;
    if (r == NULL || (r->free = calloc(n, sizeof *r->free)) == NULL || (r->held = calloc(n, 1)) == NULL) {
        if (r != NULL) {
            free(r->free);
            free(r);
        }
        FAIL(throw_errno(env, "startReading", ENOMEM));
    }
    p->reader = r; /* from here reader_free undoes everything */
    r->direct_fd = -1;
    r->nslots = n;
    r->slot_bytes = (size_t)slot_bytes;
    r->budget = (size_t)budget;
    for (uint32_t i = 0; i < n; i++) /* slot 0 is popped first */
        r->free[r->nfree++] = n - 1 - i;
    /* The ArrayBuffer owns the memory (create_pool): views JS keeps outlive the reader safely. */
    if (create_pool(env, (size_t)n * r->slot_bytes, &data, &ab) != napi_ok ||
        napi_create_reference(env, ab, 1, &r->pool) != napi_ok ||
        napi_create_reference(env, argv[3], 1, &r->cb) != napi_ok) {
        napi_failed(env, "startReading");
        reader_free(p);
        return NULL;
    }
    r->base = data;
    napi_value table_ab, table;
    void *out = NULL;
    if (napi_create_arraybuffer(env, (size_t)n * 2 * sizeof(uint32_t), &out, &table_ab) != napi_ok ||
        napi_create_typedarray(env, napi_uint32_array, (size_t)n * 2, table_ab, 0, &table) != napi_ok ||
        napi_create_reference(env, table, 1, &r->table) != napi_ok) {
        napi_failed(env, "startReading");
        reader_free(p);
        return NULL;
    }
    r->out = out;
    int rc = poller_update(p);
    if (rc < 0) {
        reader_free(p);
        FAIL(throw_errno(env, "uv_poll_start", -rc));
    }
    return ab;
}

static napi_value js_poller_release(napi_env env, napi_callback_info info) {
    napi_value argv[1], v;
    poller_t *p = this_poller(env, info, argv, 1);
    double slot;
    bool released = false;
    REQUIRE(p != NULL && get_integer(env, argv[0], "slot", 0, READER_MAX_SLOTS - 1, &slot));
    reader_t *r = p->reader;
    if (r != NULL && (uint32_t)slot < r->nslots && r->held[(uint32_t)slot]) {
        r->held[(uint32_t)slot] = 0;
        r->free[r->nfree++] = (uint32_t)slot;
        released = true;
        if (r->nfree == 1)
            poller_update(p); /* the pool was empty: readable again */
    }
    NAPI_CALL(env, napi_get_boolean(env, released, &v));
    return v;
}

/*
 * setDirect(fd, gate, frameBytes): the reader's direct mode (reader_direct) to `fd` while gate[0] != 0;
 * setDirect(-1) ends it. false without a reader. The gate is an Int32Array that JS keeps current.
 */
static napi_value js_poller_set_direct(napi_env env, napi_callback_info info) {
    napi_value argv[3], v;
    poller_t *p = this_poller(env, info, argv, 3);
    double fd, frame_bytes = 0;
    REQUIRE(p != NULL && get_integer(env, argv[0], "fd", -1, INT_MAX, &fd));
    reader_t *r = p->reader;
    bool set = false;
    if (fd >= 0) {
        napi_typedarray_type type;
        size_t length = 0;
        void *data = NULL;
        bool is_ta = false;
        NAPI_CALL(env, napi_is_typedarray(env, argv[1], &is_ta));
        if (!is_ta || napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
            type != napi_int32_array || length < 1)
            FAIL(type_error(env, "gate", "an Int32Array"));
        REQUIRE(get_integer(env, argv[2], "frameBytes", 1, 65535, &frame_bytes));
        if (r != NULL) {
            napi_ref ref;
            NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &ref));
            if (r->gate_ref != NULL)
                napi_delete_reference(env, r->gate_ref);
            r->gate_ref = ref;
            r->gate = data;
            r->frame_bytes = (uint32_t)frame_bytes;
            r->direct_fd = (int)fd;
            set = true;
        }
    } else if (r != NULL) {
        if (r->gate_ref != NULL)
            napi_delete_reference(env, r->gate_ref);
        r->gate_ref = NULL;
        r->gate = NULL;
        r->direct_fd = -1;
        set = true;
    }
    NAPI_CALL(env, napi_get_boolean(env, set, &v));
    return v;
}

/* pauseReading / resumeReading / stopReading: no-ops without a reader. */
static napi_value reader_op(napi_env env, napi_callback_info info, int op) {
    poller_t *p = this_poller(env, info, NULL, 0);
    if (p == NULL || p->reader == NULL)
        return NULL;
    if (op == 2)
        reader_free(p);
    else
        p->reader->paused = op == 0;
    int rc = poller_update(p);
    if (rc < 0)
        FAIL(throw_errno(env, "uv_poll_start", -rc));
    return NULL;
}
static napi_value js_poller_pause_reading(napi_env env, napi_callback_info info) { return reader_op(env, info, 0); }
static napi_value js_poller_resume_reading(napi_env env, napi_callback_info info) { return reader_op(env, info, 1); }
static napi_value js_poller_stop_reading(napi_env env, napi_callback_info info) { return reader_op(env, info, 2); }

static napi_value js_poller_stats(napi_env env, napi_callback_info info) {
    poller_t *p = this_poller(env, info, NULL, 0);
    napi_value obj;
    REQUIRE(p != NULL);
    reader_t *r = p->reader;
    NAPI_CALL(env, napi_create_object(env, &obj));
    NAPI_CALL(env, set_num(env, obj, "wakeups", (double)p->wakeups));
    NAPI_CALL(env, set_num(env, obj, "reads", (double)p->reads));
    NAPI_CALL(env, set_num(env, obj, "emptyReads", (double)p->empty_reads));
    NAPI_CALL(env, set_num(env, obj, "readCallbacks", (double)p->read_callbacks));
    NAPI_CALL(env, set_num(env, obj, "armed", p->armed));
    NAPI_CALL(env, set_bool(env, obj, "reading", r != NULL));
    NAPI_CALL(env, set_num(env, obj, "slots", r ? r->nslots : 0));
    NAPI_CALL(env, set_num(env, obj, "freeSlots", r ? r->nfree : 0));
    NAPI_CALL(env, set_bool(env, obj, "paused", r != NULL && r->paused));
    NAPI_CALL(env, set_bool(env, obj, "eof", r != NULL && r->eof));
    NAPI_CALL(env, set_bool(env, obj, "direct", r != NULL && r->direct_fd >= 0));
    NAPI_CALL(env, set_num(env, obj, "directWrites", r ? (double)r->direct_writes : 0));
    NAPI_CALL(env, set_num(env, obj, "directBytes", r ? (double)r->direct_bytes : 0));
    NAPI_CALL(env, set_num(env, obj, "directPartial", r ? (double)r->direct_partial : 0));
    return obj;
}

static napi_value js_poller_ctor(napi_env env, napi_callback_info info) {
    napi_value self;
    NAPI_CALL(env, napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
    return self;
}

static napi_value js_create_poller(napi_env env, napi_callback_info info) {
    ARGS(2);
    int32_t fd;
    addon_t *addon = NULL;
    uv_loop_t *loop;
    napi_value ctor, obj, name;
    REQUIRE(get_int(env, argv[0], "fd", &fd));
    if (!is_type(env, argv[1], napi_function))
        FAIL(type_error(env, "callback", "function"));
    NAPI_CALL(env, napi_get_instance_data(env, (void **)&addon));
    NAPI_CALL(env, napi_get_reference_value(env, addon->poller_ctor, &ctor));
    NAPI_CALL(env, napi_new_instance(env, ctor, 0, NULL, &obj));
    NAPI_CALL(env, napi_create_string_utf8(env, "sockctl.Poller", NAPI_AUTO_LENGTH, &name));
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    poller_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        FAIL(throw_errno(env, "uv_poll_init", ENOMEM));
    int rc = uv_poll_init_socket(loop, &p->handle, fd); /* on failure the loop has not seen the handle */
    if (rc < 0) {
        free(p);
        FAIL(throw_errno(env, "uv_poll_init", -rc));
    }
    p->handle.data = p;
    p->env = env;
    p->addon = addon;
    p->fd = fd;
    p->open = true;
    p->next = addon->pollers;
    if (p->next)
        p->next->prev = p;
    addon->pollers = p;
    /* From here the handle belongs to the loop: a failure must go through poller_close. */
    bool wrapped = napi_wrap(env, obj, p, poller_finalize, NULL, NULL) == napi_ok;
    p->js_gone = !wrapped; /* no wrapper, no finalizer: on_uv_closed alone frees */
    if (!wrapped || napi_create_reference(env, argv[1], 1, &p->cb) != napi_ok ||
        napi_async_init(env, obj, name, &p->actx) != napi_ok) {
        napi_failed(env, "createPoller");
        poller_close(p);
        return NULL;
    }
    return obj;
}

/* ---- constants and module init ------------------------------------------------------------------ */

#define C(name) { #name, name }
static const struct {
    const char *name;
    int64_t value;
} constants[] = {
    C(AF_INET), C(AF_INET6), C(AF_UNIX), C(AF_UNSPEC), C(SOCK_STREAM), C(SOCK_DGRAM), C(SOCK_SEQPACKET),
    C(SOCK_RAW), C(IPPROTO_IP), C(IPPROTO_IPV6), C(IPPROTO_TCP), C(IPPROTO_UDP), C(IPPROTO_ICMP),
    C(IPPROTO_ICMPV6), C(SOL_SOCKET), C(SO_REUSEADDR), C(SO_REUSEPORT), C(SO_KEEPALIVE), C(SO_BROADCAST),
    C(SO_RCVBUF), C(SO_SNDBUF), C(SO_LINGER), C(SO_TYPE), C(SO_ERROR), C(SO_RCVTIMEO), C(SO_SNDTIMEO),
    C(SO_ACCEPTCONN), C(SO_DOMAIN), C(SO_PROTOCOL), C(SO_OOBINLINE), C(SO_RCVLOWAT), C(SO_SNDLOWAT),
    C(SO_PRIORITY), C(SO_DONTROUTE), C(TCP_NODELAY), C(TCP_MAXSEG), C(TCP_KEEPIDLE), C(TCP_KEEPINTVL),
    C(TCP_KEEPCNT), C(TCP_CORK), C(TCP_QUICKACK), C(TCP_INFO), C(TCP_USER_TIMEOUT), C(IP_TTL), C(IP_TOS),
    C(IP_MULTICAST_TTL), C(IP_MULTICAST_LOOP), C(IP_RECVERR), C(IPV6_V6ONLY), C(IPV6_UNICAST_HOPS),
    C(IPV6_MULTICAST_HOPS), C(MSG_PEEK), C(MSG_WAITALL), C(MSG_TRUNC), C(MSG_DONTWAIT), C(MSG_OOB),
    C(MSG_NOSIGNAL), C(MSG_MORE), C(MSG_DONTROUTE), C(MSG_EOR), C(MSG_CONFIRM), C(SHUT_RD), C(SHUT_WR),
    C(SHUT_RDWR), C(SIOCINQ), C(SIOCOUTQ), C(FIONREAD), C(SOMAXCONN),
    { "POLL_READABLE", UV_READABLE }, { "POLL_WRITABLE", UV_WRITABLE },
    C(EAGAIN), C(EWOULDBLOCK), C(EINPROGRESS), C(EALREADY), C(EISCONN), C(ENOTCONN), C(ECONNREFUSED),
    C(ECONNRESET), C(ECONNABORTED), C(EPIPE), C(EADDRINUSE), C(EADDRNOTAVAIL), C(EBADF), C(EINVAL),
    C(ETIMEDOUT), C(EMFILE), C(ENFILE), C(ENOBUFS), C(ENOMEM), C(EHOSTUNREACH), C(ENETUNREACH),
    C(EOPNOTSUPP), C(EPROTOTYPE), C(EDESTADDRREQ), C(EMSGSIZE), C(ENOENT), C(EACCES), C(EPERM),
    C(ENOPROTOOPT), C(ENAMETOOLONG), C(EAFNOSUPPORT), C(EPROTONOSUPPORT), C(ESOCKTNOSUPPORT), C(ENOTSOCK),
    C(EINTR),
};
#undef C

/* Env teardown (worker exit, process end): close the handles JS left open, so the loop can close. */
static void addon_cleanup(void *arg) {
    addon_t *addon = arg;
    while (addon->pollers != NULL)
        poller_close(addon->pollers);
}

static void addon_finalize(napi_env env, void *data, void *hint) {
    addon_t *addon = data;
    (void)hint;
    napi_remove_env_cleanup_hook(env, addon_cleanup, addon); /* in case it has not run */
    addon_cleanup(addon);
    if (addon->poller_ctor != NULL)
        napi_delete_reference(env, addon->poller_ctor);
    free(addon);
}

#define METHOD(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL }
#define FN(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }

NAPI_MODULE_INIT() {
    napi_value ctor, consts;
    addon_t *addon = calloc(1, sizeof *addon);
    const napi_property_descriptor methods[] = {
        METHOD("start", js_poller_start), METHOD("stop", js_poller_stop), METHOD("close", js_poller_close),
        METHOD("startReading", js_poller_start_reading), METHOD("release", js_poller_release),
        METHOD("pauseReading", js_poller_pause_reading), METHOD("resumeReading", js_poller_resume_reading),
        METHOD("stopReading", js_poller_stop_reading), METHOD("stats", js_poller_stats),
        METHOD("setDirect", js_poller_set_direct),
    };
    const napi_property_descriptor fns[] = {
        FN("socket", js_socket), FN("socketpair", js_socketpair), FN("bind", js_bind), FN("listen", js_listen),
        FN("accept", js_accept), FN("connect", js_connect), FN("send", js_send), FN("sendv", js_sendv),
        FN("recv", js_recv), FN("recvInto", js_recv_into), FN("shutdown", js_shutdown), FN("close", js_close),
        FN("getsockname", js_getsockname), FN("getpeername", js_getpeername),
        FN("getsockoptInt", js_getsockopt_int), FN("setsockoptInt", js_setsockopt_int),
        FN("getsockoptLinger", js_getsockopt_linger), FN("setsockoptLinger", js_setsockopt_linger),
        FN("getsockoptTimeval", js_getsockopt_timeval), FN("setsockoptTimeval", js_setsockopt_timeval),
        FN("tcpInfo", js_tcp_info), FN("ioctlInt", js_ioctl_int), FN("fdCount", js_fd_count),
        FN("unixQueue", js_unix_queue), FN("tcpDiagState", js_tcp_diag_state),
        FN("createPoller", js_create_poller), FN("readerPoolBytes", js_reader_pool_bytes),
        FN("detachPool", js_detach_pool), FN("keepFreedHeap", js_keep_freed_heap),
    };
    if (addon == NULL)
        FAIL(napi_throw_error(env, "ENOMEM", "sockctl: out of memory"));
    NAPI_TRY(env, napi_set_instance_data(env, addon, addon_finalize, NULL), free(addon); return NULL);
    NAPI_CALL(env, napi_add_env_cleanup_hook(env, addon_cleanup, addon));
    NAPI_CALL(env, napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, js_poller_ctor, NULL,
                                     sizeof methods / sizeof methods[0], methods, &ctor));
    NAPI_CALL(env, napi_create_reference(env, ctor, 1, &addon->poller_ctor));
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));
    NAPI_CALL(env, napi_create_object(env, &consts));
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        NAPI_CALL(env, set_num(env, consts, constants[i].name, (double)constants[i].value));
    NAPI_CALL(env, napi_object_freeze(env, consts));
    NAPI_CALL(env, napi_set_named_property(env, exports, "constants", consts));
    return exports;
}
