// cvmfs_sys: what the layer server needs from the kernel and Node cannot reach, kept small.
//
//  - FUSE channels: each /dev/fuse descriptor is watched by the event loop's own epoll (uv_poll),
//    read without blocking when it has requests, and handed to JavaScript on the same thread, so
//    a request is decoded and answered on the thread that read it, with no thread per mount.
//  - Store calls that may block (a CernVM-FS repository may stall) run on a small pool of our
//    own threads, never on libuv's: each job is one whole answer's worth of system calls (a
//    directory listed with every entry's attributes and xattrs, one lookup, one open), resolved
//    beneath the layer's root descriptor with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so
//    no path string from the kernel or the store can lead outside the layer.
//  - FUSE passthrough (FUSE_DEV_IOC_BACKING_OPEN/CLOSE), mount(2) and umount2(2).
//
// Nothing here knows about layers, whiteouts or caches: that logic stays in TypeScript.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_getxattrat
#define SYS_getxattrat 464
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif

// <linux/fuse.h> of this distribution predates passthrough (7.40).
struct backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define DEV_IOC_MAGIC 229
#define DEV_IOC_BACKING_OPEN _IOW(DEV_IOC_MAGIC, 1, struct backing_map)
#define DEV_IOC_BACKING_CLOSE _IOW(DEV_IOC_MAGIC, 2, uint32_t)

struct xattr_args_k {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

#define CHECK(call)                                                           \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error(env, NULL, "cvmfs_sys: N-API call failed: " #call);    \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

// ---- growable output buffer ----------------------------------------------------------------

typedef struct {
  uint8_t *p;
  size_t len, cap;
  int oom;
} obuf_t;

static uint8_t *ob_reserve(obuf_t *b, size_t n) {
  if (b->oom) return NULL;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *np = realloc(b->p, cap);
    if (!np) {
      b->oom = 1;
      return NULL;
    }
    b->p = np;
    b->cap = cap;
  }
  uint8_t *at = b->p + b->len;
  b->len += n;
  return at;
}

static void put_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

// ---- path resolution beneath a directory descriptor -----------------------------------------

static int have_openat2 = -1;

// A path the kernel takes in one call is shorter than PATH_MAX; a layer's tree may go deeper
// (a tar names any depth). Longer paths are resolved this many bytes at a time at most.
#define PATH_STEP 4000

static int open_beneath_short(int dirfd, const char *p, int flags, uint64_t extra_resolve);

// Opens path (relative, "" meaning the directory itself) beneath dirfd without following any
// symlink, magic link or "..". Where openat2 is missing, walks one component at a time with
// O_NOFOLLOW. A path of PATH_MAX or more is opened a part at a time, each part beneath the
// directory the one before it opened. Returns a descriptor or -errno.
static int open_beneath(int dirfd, const char *path, int flags, uint64_t extra_resolve) {
  const char *p = (path && *path) ? path : ".";
  size_t n = strlen(p);
  if (n < PATH_STEP) return open_beneath_short(dirfd, p, flags, extra_resolve);
  // The directories of the first PATH_STEP bytes (up to the last '/' in them), then the rest.
  const char *cut = p + PATH_STEP;
  while (cut > p && *cut != '/') cut--;
  if (cut == p) return -ENAMETOOLONG;  // no component is longer than NAME_MAX: not a real path
  char *head = strndup(p, (size_t)(cut - p));
  if (!head) return -ENOMEM;
  int d = open_beneath_short(dirfd, head, O_PATH | O_DIRECTORY, extra_resolve);
  free(head);
  if (d < 0) return d;
  int fd = open_beneath(d, cut + 1, flags, extra_resolve);
  close(d);
  return fd;
}

static int open_beneath_short(int dirfd, const char *p, int flags, uint64_t extra_resolve) {
  if (have_openat2 != 0) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | extra_resolve;
    long fd = syscall(SYS_openat2, dirfd, p, &how, sizeof how);
    if (fd >= 0) {
      have_openat2 = 1;
      return (int)fd;
    }
    if (errno != ENOSYS) return -errno;
    have_openat2 = 0;
  }
  // Fallback: component by component.
  char buf[PATH_MAX];
  size_t n = strlen(p);
  if (n >= sizeof buf) return -ENAMETOOLONG;
  memcpy(buf, p, n + 1);
  int cur = dirfd;
  int owned = 0;
  char *save = NULL;
  char *comp = strtok_r(buf, "/", &save);
  if (!comp) return -EINVAL;
  for (;;) {
    char *next = strtok_r(NULL, "/", &save);
    if (strcmp(comp, "..") == 0) {
      if (owned) close(cur);
      return -EXDEV;
    }
    int fl = next ? (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : (flags | O_NOFOLLOW | O_CLOEXEC);
    int fd = openat(cur, comp, fl);
    int e = errno;
    if (owned) close(cur);
    if (fd < 0) return -e;
    if (!next) return fd;
    cur = fd;
    owned = 1;
    comp = next;
  }
}

// ---- attributes and xattrs ------------------------------------------------------------------

#define ATTR_SIZE 88

static uint32_t encode_dev(uint32_t major, uint32_t minor) {
  return (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xffu) << 12);
}

static void put_attr(uint8_t *a, const struct statx *s) {
  memset(a, 0, ATTR_SIZE);
  put_u64(a + 0, s->stx_ino);
  put_u64(a + 8, s->stx_size);
  put_u64(a + 16, s->stx_blocks);
  put_u64(a + 24, (uint64_t)s->stx_atime.tv_sec);
  put_u64(a + 32, (uint64_t)s->stx_mtime.tv_sec);
  put_u64(a + 40, (uint64_t)s->stx_ctime.tv_sec);
  put_u32(a + 48, s->stx_atime.tv_nsec);
  put_u32(a + 52, s->stx_mtime.tv_nsec);
  put_u32(a + 56, s->stx_ctime.tv_nsec);
  put_u32(a + 60, s->stx_mode);
  put_u32(a + 64, s->stx_nlink);
  put_u32(a + 68, s->stx_uid);
  put_u32(a + 72, s->stx_gid);
  put_u32(a + 76, encode_dev(s->stx_rdev_major, s->stx_rdev_minor));
  put_u32(a + 80, s->stx_blksize);
}

static int stat_at(int dirfd, const char *name, struct statx *s) {
  int fl = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | ((name && *name) ? 0 : AT_EMPTY_PATH);
  if (statx(dirfd, (name && *name) ? name : "", fl, STATX_BASIC_STATS, s) != 0) return -errno;
  return 0;
}

static int have_xattrat = -1;

static ssize_t x_list_proc(int dirfd, const char *name, char *list, size_t size) {
  int fd = (name && *name) ? openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : dirfd;
  if (fd < 0) return -errno;
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t r = listxattr(proc, list, size);
  int e = errno;
  if (fd != dirfd) close(fd);
  return r < 0 ? -e : r;
}

static ssize_t x_get_proc(int dirfd, const char *name, const char *xname, void *value, size_t size) {
  int fd = (name && *name) ? openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : dirfd;
  if (fd < 0) return -errno;
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t r = getxattr(proc, xname, value, size);
  int e = errno;
  if (fd != dirfd) close(fd);
  return r < 0 ? -e : r;
}

// The xattr system calls of an entry named relative to dirfd, never following a symlink:
// listxattrat/getxattrat (Linux 6.13), else through /proc/self/fd of an O_PATH descriptor.
static ssize_t x_list(int dirfd, const char *name, char *list, size_t size) {
  // The *xattrat calls take no O_PATH descriptor with an empty path: those go through /proc.
  if (have_xattrat != 0 && name && *name) {
    long r = syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, list, size);
    if (r >= 0) {
      have_xattrat = 1;
      return r;
    }
    if (errno != ENOSYS) return -errno;
    have_xattrat = 0;
  }
  return x_list_proc(dirfd, name, list, size);
}

static ssize_t x_get(int dirfd, const char *name, const char *xname, void *value, size_t size) {
  if (have_xattrat != 0 && name && *name) {
    struct xattr_args_k args = {(uint64_t)(uintptr_t)value, (uint32_t)size, 0};
    long r = syscall(SYS_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, xname, &args, sizeof args);
    if (r >= 0) {
      have_xattrat = 1;
      return r;
    }
    if (errno != ENOSYS) return -errno;
    have_xattrat = 0;
  }
  return x_get_proc(dirfd, name, xname, value, size);
}

// Attribute names the store invents (CernVM-FS's magic xattrs), never fetched nor shown.
static pthread_mutex_t hidden_mu = PTHREAD_MUTEX_INITIALIZER;
static char **hidden_names;
static size_t hidden_count;

static int is_hidden_xattr(const char *n) {
  int hit = 0;
  pthread_mutex_lock(&hidden_mu);
  for (size_t i = 0; i < hidden_count && !hit; i++) hit = strcmp(hidden_names[i], n) == 0;
  pthread_mutex_unlock(&hidden_mu);
  return hit;
}

#define XATTR_EAGER_MAX (64 * 1024)
#define FLAG_OPAQUE 1
#define FLAG_XATTR_ERROR 4
#define FLAG_WHITEOUT 8
#define FLAG_NOT_OPAQUE 16  // a directory known to hold no opaque marker

typedef struct {
  char list[XATTR_LIST_MAX];
  char value[XATTR_SIZE_MAX];
  char dents[64 * 1024];
} scratch_t;

// Appends the xattrs of an entry as {u16 nameLen, u16 0, u32 valueLen, name, value}...; a value
// past the eager budget is left out (valueLen VALUE_LATER) for the caller to ask by name. Returns
// FLAG_XATTR_ERROR when the store failed to list them.
#define VALUE_LATER 0xffffffffu
static int put_xattrs(obuf_t *b, int dirfd, const char *name, scratch_t *t, uint32_t *written) {
  *written = 0;
  ssize_t n = x_list(dirfd, name, t->list, sizeof t->list);
  if (n == -ENOTSUP || n == -EOPNOTSUPP || n == 0) return 0;
  if (n < 0) return FLAG_XATTR_ERROR;
  size_t total = 0;
  for (char *x = t->list; x < t->list + n; x += strlen(x) + 1) {
    size_t xl = strlen(x);
    if (xl == 0 || xl > 255 || is_hidden_xattr(x)) continue;
    ssize_t v = total <= XATTR_EAGER_MAX ? x_get(dirfd, name, x, t->value, sizeof t->value) : -E2BIG;
    if (v == -ENODATA) continue;  // removed meanwhile
    int later = v == -ERANGE || v == -E2BIG || (v >= 0 && total + (size_t)v > XATTR_EAGER_MAX);
    if (v < 0 && !later) return FLAG_XATTR_ERROR;
    size_t vl = later ? 0 : (size_t)v;
    uint8_t *p = ob_reserve(b, 8 + xl + vl);
    if (!p) return FLAG_XATTR_ERROR;
    put_u16(p, (uint16_t)xl);
    put_u16(p + 2, 0);
    put_u32(p + 4, later ? VALUE_LATER : (uint32_t)vl);
    memcpy(p + 8, x, xl);
    if (vl) memcpy(p + 8 + xl, t->value, vl);
    total += 8 + xl + vl;
  }
  *written = (uint32_t)total;
  return 0;
}

// A directory holding `.wh..wh..opq` is opaque (the translation of AUFS whiteouts).
static int has_opaque_marker(int dirfd, const char *name) {
  int fd = (name && *name) ? openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : dirfd;
  if (fd < 0) return 0;
  struct statx s;
  int r = statx(fd, ".wh..wh..opq", AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &s);
  if (fd != dirfd) close(fd);
  return r == 0;
}

// An absent name is only an answer while the layer directory is there: a root that was removed
// from the store (its link count is 0) makes every name absent, and that is ESTALE, for the
// caller to open the layer again, never a negative answer to remember.
static int root_gone(int rootfd) {
  struct statx s;
  if (statx(rootfd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_NLINK, &s) != 0) return errno == ENOENT || errno == ESTALE;
  return s.stx_nlink == 0;
}

static int64_t enoent_or_stale(int rootfd, int64_t res) {
  return (res == -ENOENT && root_gone(rootfd)) ? -ESTALE : res;
}

// One entry record:
//   u32 recLen | i32 err | u16 nameLen | u8 flags | u8 0 | u32 xattrLen | attr[88] | name | xattrs | pad8
// with_meta: the entry's xattrs (and with_opaque: a directory's opaque marker) are read too.
// bare: the layer is known to hold no xattr and no opaque directory (its census said so): none
// is read, and a directory is recorded as not opaque. That saves a listxattr per entry, and on a
// CernVM-FS store each one is a request to its FUSE client, which the kernel does not cache.
#define REC_HEAD 16
static void put_record(obuf_t *b, int dirfd, const char *name, const char *shown, int with_meta, int with_opaque, int bare, scratch_t *t) {
  size_t start = b->len;
  size_t nl = strlen(shown);
  uint8_t *h = ob_reserve(b, REC_HEAD + ATTR_SIZE + nl);
  if (!h) return;
  struct statx s;
  int err = stat_at(dirfd, name, &s);
  uint8_t flags = 0;
  uint32_t xlen = 0;
  memset(h, 0, REC_HEAD + ATTR_SIZE);
  memcpy(h + REC_HEAD + ATTR_SIZE, shown, nl);
  if (err == 0) {
    put_attr(h + REC_HEAD, &s);
    if (with_meta && bare) {
      if (with_opaque && S_ISDIR(s.stx_mode)) flags |= FLAG_NOT_OPAQUE;
    } else if (with_meta) {
      if (with_opaque && S_ISDIR(s.stx_mode)) flags |= has_opaque_marker(dirfd, name) ? FLAG_OPAQUE : FLAG_NOT_OPAQUE;
      flags |= (uint8_t)put_xattrs(b, dirfd, name, t, &xlen);
    }
  }
  size_t pad = (8 - (b->len - start) % 8) % 8;
  uint8_t *z = ob_reserve(b, pad);
  if (z) memset(z, 0, pad);
  if (b->oom) return;
  h = b->p + start;  // the buffer may have moved
  put_u32(h, (uint32_t)(b->len - start));
  put_u32(h + 4, (uint32_t)err);
  put_u16(h + 8, (uint16_t)nl);
  h[10] = flags;
  put_u32(h + 12, xlen);
}

// A record made from the directory entry alone (a listing by name): err 0, no xattrs, and of
// the attributes only the inode number and the file type. The caller stats the names it needs.
static void put_name_record(obuf_t *b, const char *name, uint64_t ino, unsigned char type) {
  size_t start = b->len;
  size_t nl = strlen(name);
  uint8_t *h = ob_reserve(b, REC_HEAD + ATTR_SIZE + nl);
  if (!h) return;
  memset(h, 0, REC_HEAD + ATTR_SIZE);
  memcpy(h + REC_HEAD + ATTR_SIZE, name, nl);
  put_u64(h + REC_HEAD, ino);
  put_u32(h + REC_HEAD + 60, (uint32_t)DTTOIF(type));
  put_u32(h + REC_HEAD + 64, 1);
  size_t pad = (8 - (b->len - start) % 8) % 8;
  uint8_t *z = ob_reserve(b, pad);
  if (z) memset(z, 0, pad);
  if (b->oom) return;
  h = b->p + start;
  put_u32(h, (uint32_t)(b->len - start));
  put_u16(h + 8, (uint16_t)nl);
}

// Names collected while listing (subdirectories to prefetch), relative to the requested directory.
typedef struct {
  char **v;
  size_t n, cap;
} names_t;

static void names_add(names_t *l, const char *prefix, const char *name) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    char **nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) return;
    l->v = nv;
    l->cap = cap;
  }
  size_t pl = strlen(prefix), nl = strlen(name);
  char *p = malloc(pl + nl + 2);
  if (!p) return;
  if (pl) {
    memcpy(p, prefix, pl);
    p[pl] = '/';
    memcpy(p + pl + 1, name, nl + 1);
  } else {
    memcpy(p, name, nl + 1);
  }
  l->v[l->n++] = p;
}

// One directory as a block of a listing answer:
//   u32 count | u16 relLen | u16 0 | u32 0 | rel (padded to 8) | the directory's record | count records
// rel names the directory by its path in the layer ("" for the root). Its subdirectories
// are added to subs (for prefetching) and its entries to *listed. A directory with more than
// limit entries is not listed (-E2BIG): the caller drops what was written. names_only: entries
// are recorded from getdents alone (put_name_record), unless it gives no type; the directory's
// own record has no xattrs, and no subdirectory is collected.
static int64_t list_block(obuf_t *b, int rootfd, const char *path, const char *rel, int bare, int names_only, scratch_t *t, names_t *subs, size_t *listed, size_t limit) {
  size_t rl = strlen(rel);
  if (rl > 0xffff) return -ENAMETOOLONG;  // the block names its directory with a u16 length
  int dfd = open_beneath(rootfd, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
  if (dfd < 0) return enoent_or_stale(rootfd, dfd);
  size_t start = b->len;
  size_t padded = (rl + 7) & ~(size_t)7;
  uint8_t *h = ob_reserve(b, 12 + 4 + padded);
  if (!h) {
    close(dfd);
    return -ENOMEM;
  }
  memset(h, 0, 16 + padded);
  memcpy(h + 16, rel, rl);
  put_record(b, dfd, "", "", !names_only, !names_only, bare, t);
  uint32_t count = 0;
  int64_t res = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, t->dents, sizeof t->dents);
    if (n < 0) {
      res = -errno;
      break;
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(t->dents + off);
      off += d->d_reclen;
      const char *nm = d->d_name;
      if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) continue;
      if (count == limit) {
        res = -E2BIG;
        break;
      }
      // Whiteout markers only lend their times to the whiteout shown in their place. Whether
      // a subdirectory is opaque is learnt when it is listed or asked for, not here: a
      // lookup inside every subdirectory would read each of them from disk ahead of time.
      size_t rec = b->len;
      if (names_only && d->d_type != DT_UNKNOWN) {
        put_name_record(b, nm, d->d_ino, d->d_type);
        count++;
        continue;
      }
      put_record(b, dfd, nm, nm, !names_only && strncmp(nm, ".wh.", 4) != 0, 0, bare, t);
      count++;
      if (!names_only && !b->oom && strncmp(nm, ".wh.", 4) != 0) {
        int32_t err;
        uint32_t mode;
        memcpy(&err, b->p + rec + 4, 4);
        memcpy(&mode, b->p + rec + REC_HEAD + 60, 4);
        if (err == 0 && S_ISDIR(mode)) names_add(subs, rel, nm);
      }
    }
    if (res != 0) break;
  }
  close(dfd);
  if (b->oom) return -ENOMEM;
  if (res == 0 && count == 0 && root_gone(rootfd)) res = -ESTALE;
  if (res == 0) {
    put_u32(b->p + start, count);
    put_u16(b->p + start + 4, (uint16_t)rl);
    *listed += count;
  }
  return res;
}

// ---- the pool -------------------------------------------------------------------------------

enum {
  OP_LOOKUP = 1, OP_STAT = 2, OP_LIST = 3, OP_READLINK = 4, OP_OPEN = 5, OP_PREAD = 6, OP_CLOSE = 7,
  OP_STATFS = 8, OP_OPENROOT = 9, OP_MOUNT = 10, OP_UMOUNT = 11, OP_GETXATTR = 12, OP_SLEEP = 13, OP_ISMOUNT = 14,
};

typedef struct job {
  struct job *next;
  int op;
  double token;
  int64_t i0, i1;
  double d2;
  char *s0, *s1, *s2, *s3;
  size_t s0len;
  // result
  int64_t res;
  uint8_t *out;
  size_t outlen;
  size_t outskip;  // bytes at the front of out that are not part of the result (header room)
} job_t;

typedef struct {
  pthread_t tid;
  int busy;
  double since;  // monotonic ms when the current job started
} worker_t;

#define HARD_MAX_THREADS 256
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static job_t *queue_head, *queue_tail;
static job_t *done_head, *done_tail;
static size_t queued;
static int nthreads, nidle;
static int nstarting;  // created, not yet looking at the queue: each will take a job
static int max_threads = 32;
static double stuck_ms = 1000;
static worker_t workers[HARD_MAX_THREADS];
static uv_async_t done_async;
static uv_timer_t grow_timer;
static int inflight;  // main thread only
static uint64_t jobs_done;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static scratch_t *thread_scratch(void) {
  static __thread scratch_t *t;
  if (!t) t = malloc(sizeof *t);
  return t;
}

static void run_job(job_t *j) {
  scratch_t *t = thread_scratch();
  obuf_t b = {0};
  if (!t) {
    j->res = -ENOMEM;
    return;
  }
  switch (j->op) {
    case OP_LOOKUP: {  // i0 rootfd, s0 parent path, s1 name (one component), d2 1: the layer is bare
      if (!j->s1 || !*j->s1 || strchr(j->s1, '/') || strcmp(j->s1, ".") == 0 || strcmp(j->s1, "..") == 0) {
        j->res = -EINVAL;
        break;
      }
      int pfd = open_beneath((int)j->i0, j->s0, O_PATH | O_DIRECTORY, 0);
      if (pfd < 0) {
        j->res = enoent_or_stale((int)j->i0, pfd);
        break;
      }
      put_record(&b, pfd, j->s1, j->s1, 1, 1, j->d2 == 1, t);
      int32_t err;
      if (!b.oom && (memcpy(&err, b.p + 4, 4), err == -ENOENT)) {
        // An AUFS whiteout stands in for a name the layer deletes.
        char marker[NAME_MAX + 8];
        if (snprintf(marker, sizeof marker, ".wh.%s", j->s1) < (int)sizeof marker) {
          obuf_t w = {0};
          put_record(&w, pfd, marker, j->s1, 0, 0, 0, t);
          int32_t werr = -ENOENT;
          if (!w.oom) memcpy(&werr, w.p + 4, 4);
          if (werr == 0) {
            w.p[10] |= FLAG_WHITEOUT;
            free(b.p);
            b = w;
          } else {
            free(w.p);
          }
        }
      }
      close(pfd);
      j->res = b.oom ? -ENOMEM : 0;
      if (!b.oom) {
        int32_t final;
        memcpy(&final, b.p + 4, 4);
        if (final == -ENOENT && root_gone((int)j->i0)) j->res = -ESTALE;
      }
      break;
    }
    case OP_STAT: {  // i0 rootfd, s0 path, d2 1: the layer is bare
      int fd = open_beneath((int)j->i0, j->s0, O_PATH | O_NOFOLLOW, 0);
      if (fd < 0) {
        j->res = enoent_or_stale((int)j->i0, fd);
        break;
      }
      put_record(&b, fd, "", "", 1, 1, j->d2 == 1, t);
      close(fd);
      j->res = b.oom ? -ENOMEM : 0;
      break;
    }
    case OP_LIST: {  // i0 rootfd, s0 dir path, i1 prefetch budget (entries), s2 more directories ('\n'-separated),
                     // d2 bits: 1 the layer is bare, 2 by name only (no prefetch then)
      int bare = ((int64_t)j->d2 & 1) != 0, names_only = ((int64_t)j->d2 & 2) != 0;
      uint8_t *head = ob_reserve(&b, 8);
      if (head) memset(head, 0, 8);
      names_t subs = {0};
      size_t own = 0;
      const char *dir = j->s0 ? j->s0 : "";
      int64_t res = list_block(&b, (int)j->i0, dir, dir, bare, names_only, t, &subs, &own, SIZE_MAX);
      uint32_t blocks = res == 0 ? 1 : 0;
      // Prefetch: a program that lists a directory nearly always lists its subdirectories next,
      // and then the directory's next siblings (find, du, a container start walking /usr); the
      // caller names those siblings. Answering them from memory saves a round trip to the pool
      // each. Breadth first, up to a budget of entries; failures are left for the real request.
      if (j->s2 && !names_only) {
        for (char *p = j->s2, *nl; *p; p = nl + 1) {
          nl = strchr(p, '\n');
          if (nl) *nl = 0;
          if (*p) names_add(&subs, "", p);
          if (!nl) break;
        }
      }
      size_t budget = j->i1 > 0 && !names_only ? (size_t)j->i1 : 0;
      size_t listed = 0;
      size_t frontier_from = 0;
      for (size_t q = 0; res == 0 && q < subs.n && listed < budget && blocks < 256 && !b.oom; q++, frontier_from = q) {
        const char *rel = subs.v[q];
        size_t mark = b.len, subs_mark = subs.n;
        // Only a directory that fits in what is left of the budget: one big directory (a
        // 100,000-entry one) would otherwise be listed, statx by statx, for a lookup next to it.
        if (list_block(&b, (int)j->i0, rel, rel, bare, 0, t, &subs, &listed, budget - listed) == 0) {
          blocks++;
        } else {
          b.len = mark;
          while (subs.n > subs_mark) free(subs.v[--subs.n]);
        }
      }
      // The frontier: the directories queued and not listed, in walk order, for the caller to
      // list next if the walk goes on (u32 count, then a u16 length and the path, each).
      if (res == 0) {
        uint8_t *cnt = ob_reserve(&b, 4);
        size_t cnt_at = cnt ? (size_t)(cnt - b.p) : 0;
        uint32_t n = 0;
        for (size_t q = frontier_from; q < subs.n && n < 256 && !b.oom; q++) {
          size_t l = strlen(subs.v[q]);
          if (l > 0xffff) continue;  // not sayable in a u16: left for a request of its own
          uint8_t *p = ob_reserve(&b, 2 + l);
          if (!p) break;
          put_u16(p, (uint16_t)l);
          memcpy(p + 2, subs.v[q], l);
          n++;
        }
        if (!b.oom) put_u32(b.p + cnt_at, n);
      }
      for (size_t q = 0; q < subs.n; q++) free(subs.v[q]);
      free(subs.v);
      if (b.oom) res = -ENOMEM;
      if (res == 0) put_u32(b.p, blocks);
      j->res = res;
      break;
    }
    case OP_READLINK: {  // i0 rootfd, s0 path
      int fd = open_beneath((int)j->i0, j->s0, O_PATH | O_NOFOLLOW, 0);
      if (fd < 0) {
        j->res = enoent_or_stale((int)j->i0, fd);
        break;
      }
      uint8_t *p = ob_reserve(&b, PATH_MAX);
      ssize_t n = p ? readlinkat(fd, "", (char *)p, PATH_MAX) : -1;
      j->res = n < 0 ? (p ? -errno : -ENOMEM) : n;
      if (n >= 0) b.len = (size_t)n;
      close(fd);
      break;
    }
    case OP_OPEN: {  // i0 rootfd, s0 path, d2 expected inode (0: any), i1 /dev/fuse fd for passthrough (-1: none)
      // Without i1: res is the file's descriptor. With i1: the file is registered as a
      // passthrough backing file and closed; res is the backing id, and out (8 bytes) says which
      // it is: int32 kind (0 descriptor, 1 backing id), int32 errno of a refused registration.
      int fd = open_beneath((int)j->i0, j->s0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0);
      if (fd < 0) {
        j->res = enoent_or_stale((int)j->i0, fd);
        break;
      }
      struct statx s;
      int e = stat_at(fd, "", &s);
      if (e == 0 && !S_ISREG(s.stx_mode)) e = -ENXIO;
      if (e == 0 && j->d2 != 0 && (double)s.stx_ino != j->d2) e = -ESTALE;
      if (e != 0) {
        close(fd);
        j->res = e;
        break;
      }
      j->res = fd;
      if (j->i1 >= 0) {
        int32_t *kind = (int32_t *)ob_reserve(&b, 8);
        if (!kind) {
          close(fd);
          j->res = -ENOMEM;
          break;
        }
        struct backing_map m = {(int32_t)fd, 0, 0};
        int id = ioctl((int)j->i1, DEV_IOC_BACKING_OPEN, &m);
        kind[0] = id >= 0 ? 1 : 0;
        kind[1] = id >= 0 ? 0 : errno;
        if (id >= 0) {
          close(fd);
          j->res = id;
        }
      }
      break;
    }
    case OP_PREAD: {  // i0 fd, i1 length, d2 offset; 16 bytes of room for the reply header first
      size_t len = (size_t)j->i1;
      uint8_t *p = ob_reserve(&b, 16 + len);
      if (!p) {
        j->res = -ENOMEM;
        break;
      }
      size_t done = 0;
      int64_t res = 0;
      while (done < len) {
        ssize_t n = pread((int)j->i0, p + 16 + done, len - done, (off_t)j->d2 + (off_t)done);
        if (n < 0) {
          if (errno == EINTR) continue;
          res = -errno;
          break;
        }
        if (n == 0) break;
        done += (size_t)n;
      }
      j->res = res < 0 ? res : (int64_t)done;
      b.len = 16 + done;
      j->outskip = 16;
      break;
    }
    case OP_CLOSE:
      j->res = close((int)j->i0) == 0 ? 0 : -errno;
      break;
    case OP_STATFS: {  // i0 fd; fuse_kstatfs (80 bytes)
      struct statfs s;
      if (fstatfs((int)j->i0, &s) != 0) {
        j->res = -errno;
        break;
      }
      uint8_t *p = ob_reserve(&b, 80);
      if (!p) {
        j->res = -ENOMEM;
        break;
      }
      memset(p, 0, 80);
      put_u64(p, s.f_blocks);
      put_u64(p + 8, s.f_bfree);
      put_u64(p + 16, s.f_bavail);
      put_u64(p + 24, s.f_files);
      put_u64(p + 32, s.f_ffree);
      put_u32(p + 40, (uint32_t)s.f_bsize);
      put_u32(p + 44, 255);
      put_u32(p + 48, (uint32_t)(s.f_frsize ? s.f_frsize : s.f_bsize));
      j->res = 0;
      break;
    }
    case OP_OPENROOT: {  // s0 trusted prefix (links followed), s1 path beneath it (none followed)
      int tfd = open(j->s0, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (tfd < 0) {
        j->res = -errno;
        break;
      }
      // No O_NOFOLLOW: with it, openat2 opens a trailing symlink itself (and O_DIRECTORY then
      // says ENOTDIR, "not there"); without it RESOLVE_NO_SYMLINKS refuses it as any other, ELOOP.
      int fd = (j->s1 && *j->s1) ? open_beneath(tfd, j->s1, O_PATH | O_DIRECTORY, 0) : tfd;
      if (fd != tfd) close(tfd);
      if (fd < 0) {
        j->res = fd;
        break;
      }
      put_record(&b, fd, "", "", 1, 1, j->d2 == 1, t);
      j->res = b.oom ? (close(fd), -ENOMEM) : fd;
      break;
    }
    case OP_MOUNT:  // s0 source, s1 target, s2 type, s3 data, i0 flags
      j->res = mount(j->s0, j->s1, j->s2, (unsigned long)j->i0, j->s3) == 0 ? 0 : -errno;
      break;
    case OP_UMOUNT:  // s0 target, i0 flags
      j->res = umount2(j->s0, (int)j->i0) == 0 ? 0 : -errno;
      break;
    case OP_GETXATTR: {  // i0 rootfd, s0 path, s1 xattr name
      int fd = open_beneath((int)j->i0, j->s0, O_PATH | O_NOFOLLOW, 0);
      if (fd < 0) {
        j->res = fd;
        break;
      }
      uint8_t *p = ob_reserve(&b, XATTR_SIZE_MAX);
      ssize_t n = p ? x_get(fd, "", j->s1, p, XATTR_SIZE_MAX) : -ENOMEM;
      close(fd);
      j->res = n;
      b.len = n > 0 ? (size_t)n : 0;
      break;
    }
    case OP_ISMOUNT: {  // s0 parent directory, s1 name: 1 when something is mounted there, 0 when not
      // RESOLVE_NO_XDEV refuses to step onto the mount before asking the mounted filesystem
      // anything, so a FUSE mount whose server hangs is found without hanging.
      int pfd = open(j->s0, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (pfd < 0) {
        j->res = errno == ENOENT ? 0 : -errno;
        break;
      }
      struct open_how how;
      memset(&how, 0, sizeof how);
      how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
      how.resolve = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS;
      long fd = syscall(SYS_openat2, pfd, j->s1, &how, sizeof how);
      int e = errno;
      close(pfd);
      if (fd >= 0) {
        close((int)fd);
        j->res = 0;
      } else {
        j->res = e == EXDEV ? 1 : e == ENOENT ? 0 : -e;
      }
      break;
    }
    case OP_SLEEP: {  // d2 milliseconds: lets tests hold a pool thread
      struct timespec ts = {(time_t)(j->d2 / 1000), (long)((int64_t)j->d2 % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
      j->res = 0;
      break;
    }
    default:
      j->res = -ENOSYS;
  }
  if (b.oom) {
    free(b.p);
    b.p = NULL;
    b.len = 0;
    if (j->res >= 0) j->res = -ENOMEM;
  }
  j->out = b.p;
  j->outlen = b.len;
}

static int stuck_count_locked(double now) {
  int n = 0;
  for (int i = 0; i < HARD_MAX_THREADS; i++)
    if (workers[i].busy && now - workers[i].since > stuck_ms) n++;
  return n;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  pthread_mutex_lock(&pool_mu);
  nstarting--;
  for (;;) {
    while (!queue_head) {
      nidle++;
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += 30;
      int r = pthread_cond_timedwait(&pool_cv, &pool_mu, &until);
      nidle--;
      if (r == ETIMEDOUT && !queue_head) {  // idle for long: give the thread back
        w->tid = 0;
        nthreads--;
        pthread_mutex_unlock(&pool_mu);
        return NULL;
      }
    }
    job_t *j = queue_head;
    queue_head = j->next;
    if (!queue_head) queue_tail = NULL;
    queued--;
    w->busy = 1;
    w->since = now_ms();
    pthread_mutex_unlock(&pool_mu);

    run_job(j);

    pthread_mutex_lock(&pool_mu);
    w->busy = 0;
    j->next = NULL;
    if (done_tail)
      done_tail->next = j;
    else
      done_head = j;
    done_tail = j;
    pthread_mutex_unlock(&pool_mu);
    uv_async_send(&done_async);
    pthread_mutex_lock(&pool_mu);
  }
}

// Starts threads while jobs (those queued and `incoming` about to be) outnumber the threads
// free to take them, up to max_threads plus one for each thread stuck in a store call for
// longer than stuck_ms (a stalled store must not take the pool from the others). All that are
// allowed start now, not one per submit: the queue is first in, first out, so a healthy
// layer's call queued behind stalled ones gets a thread only once every job ahead of it has one.
static int maybe_grow_locked(size_t incoming) {
  double now = now_ms();
  int allowed = max_threads + stuck_count_locked(now);
  if (allowed > HARD_MAX_THREADS) allowed = HARD_MAX_THREADS;
  while ((size_t)(nidle + nstarting) < queued + incoming && nthreads < allowed) {
    int i = 0;
    while (i < HARD_MAX_THREADS && workers[i].tid != 0) i++;
    if (i == HARD_MAX_THREADS) return 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    workers[i].busy = 0;
    int r = pthread_create(&workers[i].tid, &attr, worker_main, &workers[i]);
    pthread_attr_destroy(&attr);
    if (r != 0) {
      workers[i].tid = 0;
      return -r;
    }
    nthreads++;
    nstarting++;
  }
  return 0;
}

// Jobs left waiting because every thread was busy are looked at again once those threads may
// count as stuck: only a submit grows the pool, and none may come (one reader, one lookup).
static void on_grow_timer(uv_timer_t *h) {
  pthread_mutex_lock(&pool_mu);
  maybe_grow_locked(0);
  int starved = queued > (size_t)(nidle + nstarting);
  double again = stuck_ms;
  pthread_mutex_unlock(&pool_mu);
  if (starved) uv_timer_start(h, on_grow_timer, (uint64_t)again + 1, 0);
}

// ---- JavaScript side ------------------------------------------------------------------------

static napi_ref on_requests_ref, on_complete_ref, resource_ref;
static napi_async_context async_ctx;
static napi_env main_env;

#define SLOT_SIZE (16 * 1024)
#define SLOT_COUNT 1
static uint8_t *slots;
static int32_t *slot_lens;

static void report_exception(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) return;
  napi_value err;
  napi_get_and_clear_last_exception(env, &err);
  napi_fatal_exception(env, err);
}

static void free_external(napi_env env, void *data, void *hint) { free(data); }

static void on_done(uv_async_t *h) {
  napi_env env = main_env;
  pthread_mutex_lock(&pool_mu);
  job_t *list = done_head;
  done_head = done_tail = NULL;
  pthread_mutex_unlock(&pool_mu);
  if (!list) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value resource, cb, recv;
  napi_get_reference_value(env, resource_ref, &resource);
  napi_get_reference_value(env, on_complete_ref, &cb);
  napi_get_undefined(env, &recv);
  napi_callback_scope cscope;
  napi_open_callback_scope(env, resource, async_ctx, &cscope);
  while (list) {
    job_t *j = list;
    list = j->next;
    inflight--;
    jobs_done++;
    napi_value argv[3];
    napi_create_double(env, j->token, &argv[0]);
    napi_create_double(env, (double)j->res, &argv[1]);
    if (j->out && j->outlen > j->outskip) {
      // The whole allocation, header room included: the caller knows where its data starts.
      napi_create_external_buffer(env, j->outlen, j->out, free_external, NULL, &argv[2]);
      j->out = NULL;
    } else {
      napi_get_undefined(env, &argv[2]);
    }
    free(j->out);
    free(j->s0);
    free(j->s1);
    free(j->s2);
    free(j->s3);
    free(j);
    napi_value ignored;
    if (napi_call_function(env, recv, cb, 3, argv, &ignored) != napi_ok) report_exception(env);
  }
  if (inflight == 0) uv_unref((uv_handle_t *)&done_async);
  napi_close_callback_scope(env, cscope);
  napi_close_handle_scope(env, scope);
}

typedef struct {
  uv_poll_t poll;
  int fd;
  double token;
  int closing;
  int spin_skip;
  int spin_backoff;
} chan_t;

static void chan_closed(uv_handle_t *h) { free(h->data); }

// Busy polling: after answering a request, the event-loop thread reads the channel again for a
// few microseconds before it goes back to epoll, yielding the CPU between tries. A program that
// asks one thing after another (stat after stat) has its next request read at once, without a
// sleep and a wake-up of this thread, which cost as much as the answer itself here (measured: a
// LOOKUP round trip of 38 us became 28 us, client and server on different CPUs; 32 -> 29 us on
// the same CPU, where the yield lets the client run). A channel whose spin found nothing spins
// again only after 1, 2, 4 ... 64 requests; nothing spins while store calls are in flight (their
// answers come through the loop) and at most 64 requests are read in one spin, so that other
// channels and the loop's own work wait at most that long. 0 turns it off.
static uint64_t busy_poll_ns = 20000;
#define BUSY_POLL_MAX_REQUESTS 64
#define BUSY_POLL_MAX_BACKOFF 64

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void deliver_requests(chan_t *c, int count, int err);

static void busy_poll(chan_t *c) {
  if (busy_poll_ns == 0) return;
  if (c->spin_skip > 0) {
    c->spin_skip--;
    return;
  }
  uint64_t until = mono_ns() + busy_poll_ns;
  int caught = 0;
  while (!c->closing && inflight == 0 && caught < BUSY_POLL_MAX_REQUESTS) {
    ssize_t n = read(c->fd, slots, SLOT_SIZE);
    if (n > 0) {
      slot_lens[0] = (int32_t)n;
      caught++;
      c->spin_backoff = 0;
      deliver_requests(c, 1, 0);
      until = mono_ns() + busy_poll_ns;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOENT)) {
      if (mono_ns() < until) {
        sched_yield();
        continue;
      }
      c->spin_backoff = c->spin_backoff == 0 ? 1 : (c->spin_backoff >= BUSY_POLL_MAX_BACKOFF ? BUSY_POLL_MAX_BACKOFF : c->spin_backoff * 2);
      c->spin_skip = c->spin_backoff;
      return;
    }
    // Anything else (ENODEV: unmounted, a read of 0) is the poll's to see.
    return;
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  chan_t *c = h->data;
  int count = 0;
  int err = 0;
  // One request per wake-up: a program asks one thing at a time, so a second read right away
  // would nearly always be a wasted EAGAIN; busy_poll reads the next one if it comes soon. When
  // more are queued, epoll reports the descriptor again.
  while (count < SLOT_COUNT) {
    ssize_t n = read(c->fd, slots + (size_t)count * SLOT_SIZE, SLOT_SIZE);
    if (n < 0) {
      // ENOENT: a request was interrupted before we read it; EINTR: try again.
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == EAGAIN) break;
      err = errno;
      break;
    }
    if (n == 0) {
      // /dev/fuse never reads 0 bytes; another descriptor (a test's socket) does at its end.
      err = ENODEV;
      break;
    }
    slot_lens[count++] = (int32_t)n;
  }
  if (count == 0 && err == 0) return;
  deliver_requests(c, count, err);
  if (err == 0) busy_poll(c);
}

static void deliver_requests(chan_t *c, int count, int err) {
  napi_env env = main_env;
  if (err != 0) uv_poll_stop(&c->poll);  // ENODEV: unmounted or aborted
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value resource, cb, recv, argv[3], ignored;
  napi_get_reference_value(env, resource_ref, &resource);
  napi_get_reference_value(env, on_requests_ref, &cb);
  napi_get_undefined(env, &recv);
  napi_create_double(env, c->token, &argv[0]);
  napi_create_int32(env, count, &argv[1]);
  napi_create_int32(env, err, &argv[2]);
  napi_callback_scope cscope;
  napi_open_callback_scope(env, resource, async_ctx, &cscope);
  if (napi_call_function(env, recv, cb, 3, argv, &ignored) != napi_ok) report_exception(env);
  napi_close_callback_scope(env, cscope);
  napi_close_handle_scope(env, scope);
}

// ---- argument helpers -----------------------------------------------------------------------

static int arg_i64(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) return 0;
  return napi_get_value_int64(env, v, out) == napi_ok;
}

static int arg_f64(napi_env env, napi_value v, double *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number) return 0;
  return napi_get_value_double(env, v, out) == napi_ok;
}

// A Buffer argument as a NUL-terminated copy (paths are bytes); undefined/null gives NULL.
static int arg_cstr(napi_env env, napi_value v, char **out, size_t *lenp) {
  *out = NULL;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) return 1;
  bool isbuf = false;
  napi_is_buffer(env, v, &isbuf);
  if (!isbuf) return 0;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return 0;
  if (memchr(data, 0, len)) return 0;
  char *s = malloc(len + 1);
  if (!s) return 0;
  memcpy(s, data, len);
  s[len] = 0;
  *out = s;
  if (lenp) *lenp = len;
  return 1;
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  napi_value undef;
  napi_get_undefined(env, &undef);
  for (size_t i = argc; i < want; i++) argv[i] = undef;
  return undef;
}

// ---- exported functions ---------------------------------------------------------------------

// setHandlers(onRequests(token, count, errno), onComplete(token, result, buffer|undefined))
static napi_value js_set_handlers(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  if (on_requests_ref) napi_delete_reference(env, on_requests_ref);
  if (on_complete_ref) napi_delete_reference(env, on_complete_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &on_requests_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &on_complete_ref));
  return NULL;
}

// requestSlots() -> [Buffer slots, Int32Array lengths, slotSize]
static napi_value js_request_slots(napi_env env, napi_callback_info info) {
  napi_value arr, buf, ab, lens;
  CHECK(napi_create_external_buffer(env, (size_t)SLOT_SIZE * SLOT_COUNT, slots, NULL, NULL, &buf));
  CHECK(napi_create_external_arraybuffer(env, slot_lens, sizeof(int32_t) * SLOT_COUNT, NULL, NULL, &ab));
  CHECK(napi_create_typedarray(env, napi_int32_array, SLOT_COUNT, ab, 0, &lens));
  CHECK(napi_create_array_with_length(env, 3, &arr));
  napi_set_element(env, arr, 0, buf);
  napi_set_element(env, arr, 1, lens);
  napi_set_element(env, arr, 2, num(env, SLOT_SIZE));
  return arr;
}

static void chan_finalize(napi_env env, void *data, void *hint) {
  chan_t *c = data;
  if (!c->closing) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->poll, chan_closed);
  }
}

// channelStart(fd, token) -> handle: reads fd (made non-blocking) on the event loop.
static napi_value js_channel_start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int64_t fd;
  double token;
  if (!arg_i64(env, argv[0], &fd) || !arg_f64(env, argv[1], &token)) {
    napi_throw_type_error(env, NULL, "channelStart(fd, token)");
    return NULL;
  }
  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0 || fcntl((int)fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  chan_t *c = calloc(1, sizeof *c);
  if (!c) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  c->fd = (int)fd;
  c->token = token;
  int r = uv_poll_init(loop, &c->poll, c->fd);
  if (r != 0) {
    free(c);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  c->poll.data = c;
  r = uv_poll_start(&c->poll, UV_READABLE, on_readable);
  if (r != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->poll, chan_closed);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  napi_value ext;
  CHECK(napi_create_external(env, c, NULL, NULL, &ext));
  return ext;
}

// channelStop(handle): stops watching (the descriptor stays open). Idempotent.
static napi_value js_channel_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  get_args(env, info, 1, argv);
  void *data = NULL;
  if (napi_get_value_external(env, argv[0], &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "channelStop(handle)");
    return NULL;
  }
  chan_finalize(env, data, NULL);
  return NULL;
}

// setBlocking(fd, blocking) -> 0 | -errno
static napi_value js_set_blocking(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int64_t fd;
  bool blocking = false;
  if (!arg_i64(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &blocking) != napi_ok) {
    napi_throw_type_error(env, NULL, "setBlocking(fd, blocking)");
    return NULL;
  }
  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0) return num(env, -errno);
  fl = blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
  return num(env, fcntl((int)fd, F_SETFL, fl) < 0 ? -errno : 0);
}

// write(fd, buffer, length) / writev(fd, head, body) -> bytes written | -errno
static napi_value js_write(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  get_args(env, info, 3, argv);
  int64_t fd, len;
  void *data;
  size_t blen;
  if (!arg_i64(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &data, &blen) != napi_ok || !arg_i64(env, argv[2], &len) ||
      len < 0 || (size_t)len > blen) {
    napi_throw_type_error(env, NULL, "write(fd, buffer, length)");
    return NULL;
  }
  ssize_t n = write((int)fd, data, (size_t)len);
  return num(env, n < 0 ? -errno : (double)n);
}

static napi_value js_writev(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  get_args(env, info, 3, argv);
  int64_t fd;
  struct iovec iov[2];
  size_t l0, l1;
  if (!arg_i64(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &iov[0].iov_base, &l0) != napi_ok ||
      napi_get_buffer_info(env, argv[2], &iov[1].iov_base, &l1) != napi_ok) {
    napi_throw_type_error(env, NULL, "writev(fd, head, body)");
    return NULL;
  }
  iov[0].iov_len = l0;
  iov[1].iov_len = l1;
  ssize_t n = writev((int)fd, iov, 2);
  return num(env, n < 0 ? -errno : (double)n);
}

// submit(op, token, i0, i1, d2, s0, s1, s2, s3) -> 0 | -errno; the answer arrives through
// onComplete(token, result, buffer).
static napi_value js_submit(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  get_args(env, info, 9, argv);
  int64_t op, i0 = 0, i1 = 0;
  double token, d2 = 0;
  if (!arg_i64(env, argv[0], &op) || !arg_f64(env, argv[1], &token)) {
    napi_throw_type_error(env, NULL, "submit(op, token, ...)");
    return NULL;
  }
  arg_i64(env, argv[2], &i0);
  arg_i64(env, argv[3], &i1);
  arg_f64(env, argv[4], &d2);
  job_t *j = calloc(1, sizeof *j);
  if (!j) return num(env, -ENOMEM);
  j->op = (int)op;
  j->token = token;
  j->i0 = i0;
  j->i1 = i1;
  j->d2 = d2;
  if (!arg_cstr(env, argv[5], &j->s0, &j->s0len) || !arg_cstr(env, argv[6], &j->s1, NULL) || !arg_cstr(env, argv[7], &j->s2, NULL) ||
      !arg_cstr(env, argv[8], &j->s3, NULL)) {
    free(j->s0);
    free(j->s1);
    free(j->s2);
    free(j->s3);
    free(j);
    return num(env, -EINVAL);  // a path with a NUL byte, or not a Buffer
  }
  if (op == OP_PREAD && (i1 < 0 || i1 > 16 * 1024 * 1024)) {
    free(j->s0);
    free(j->s1);
    free(j->s2);
    free(j->s3);
    free(j);
    return num(env, -EINVAL);
  }
  pthread_mutex_lock(&pool_mu);
  int g = maybe_grow_locked(1);
  if (g != 0 && nthreads == 0) {
    pthread_mutex_unlock(&pool_mu);
    free(j->s0);
    free(j->s1);
    free(j->s2);
    free(j->s3);
    free(j);
    return num(env, g);
  }
  if (queue_tail)
    queue_tail->next = j;
  else
    queue_head = j;
  queue_tail = j;
  queued++;
  pthread_cond_signal(&pool_cv);
  int starved = queued > (size_t)(nidle + nstarting);
  double wait = stuck_ms;
  pthread_mutex_unlock(&pool_mu);
  if (starved && !uv_is_active((uv_handle_t *)&grow_timer)) uv_timer_start(&grow_timer, on_grow_timer, (uint64_t)wait + 1, 0);
  if (inflight++ == 0) uv_ref((uv_handle_t *)&done_async);
  return num(env, 0);
}

// poolConfig(maxThreads, stuckMs)
static napi_value js_pool_config(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int64_t m;
  double s;
  if (!arg_i64(env, argv[0], &m) || !arg_f64(env, argv[1], &s) || m < 1 || m > HARD_MAX_THREADS || s < 1) {
    napi_throw_range_error(env, NULL, "poolConfig(maxThreads 1..256, stuckMs >= 1)");
    return NULL;
  }
  pthread_mutex_lock(&pool_mu);
  max_threads = (int)m;
  stuck_ms = s;
  pthread_mutex_unlock(&pool_mu);
  return NULL;
}

// poolStats() -> [threads, idle, queued, stuck, inflight, jobsDone]
static napi_value js_pool_stats(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&pool_mu);
  double v[6] = {nthreads, nidle, (double)queued, stuck_count_locked(now_ms()), inflight, (double)jobs_done};
  pthread_mutex_unlock(&pool_mu);
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 6, &arr));
  for (uint32_t i = 0; i < 6; i++) napi_set_element(env, arr, i, num(env, v[i]));
  return arr;
}

// setBusyPoll(microseconds): how long a channel is read again after an answer (0: not at all).
static napi_value js_set_busy_poll(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  get_args(env, info, 1, argv);
  int64_t us;
  if (!arg_i64(env, argv[0], &us) || us < 0 || us > 1000000) {
    napi_throw_range_error(env, NULL, "setBusyPoll(microseconds): 0 to 1000000");
    return NULL;
  }
  busy_poll_ns = (uint64_t)us * 1000;
  return NULL;
}

// setHiddenXattrs([Buffer, ...])
static napi_value js_set_hidden_xattrs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  get_args(env, info, 1, argv);
  uint32_t n = 0;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "setHiddenXattrs(names)");
    return NULL;
  }
  char **names = calloc(n ? n : 1, sizeof *names);
  if (!names) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    if (!arg_cstr(env, v, &names[i], NULL) || !names[i]) {
      for (uint32_t k = 0; k < i; k++) free(names[k]);
      free(names);
      napi_throw_type_error(env, NULL, "setHiddenXattrs: names must be Buffers");
      return NULL;
    }
  }
  pthread_mutex_lock(&hidden_mu);
  char **old = hidden_names;
  size_t oldn = hidden_count;
  hidden_names = names;
  hidden_count = n;
  pthread_mutex_unlock(&hidden_mu);
  for (size_t i = 0; i < oldn; i++) free(old[i]);
  free(old);
  return NULL;
}

// backingClose(devFd, id) -> 0 | -errno (backing files are registered by OP_OPEN on the pool)
static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int64_t dev, id;
  if (!arg_i64(env, argv[0], &dev) || !arg_i64(env, argv[1], &id)) {
    napi_throw_type_error(env, NULL, "backingClose(devFd, id)");
    return NULL;
  }
  uint32_t bid = (uint32_t)id;
  int r = ioctl((int)dev, DEV_IOC_BACKING_CLOSE, &bid);
  return num(env, r < 0 ? -errno : r);
}

// closeFd(fd) -> 0 | -errno. Only for descriptors whose close cannot block (O_PATH, /dev/fuse).
static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  get_args(env, info, 1, argv);
  int64_t fd;
  if (!arg_i64(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "closeFd(fd)");
    return NULL;
  }
  return num(env, close((int)fd) < 0 ? -errno : 0);
}

// execv(path, argv: Buffers) replaces this process by path with argv (argv[0] included), keeping its pid:
// a server started without its runtime flags starts again with them, still the process its
// supervisor (a container runtime, systemd) started. Returns -errno only when it failed.
static napi_value js_execv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  char *path = NULL;
  bool isarr = false;
  uint32_t n = 0;
  if (!arg_cstr(env, argv[0], &path, NULL) || !path || napi_is_array(env, argv[1], &isarr) != napi_ok || !isarr ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n == 0 || n > 4096) {
    free(path);
    napi_throw_type_error(env, NULL, "execv(path: Buffer, argv: 1..4096 Buffers)");
    return NULL;
  }
  char **args = calloc((size_t)n + 1, sizeof *args);
  int ok = args != NULL;
  for (uint32_t i = 0; ok && i < n; i++) {
    napi_value e;
    ok = napi_get_element(env, argv[1], i, &e) == napi_ok && arg_cstr(env, e, &args[i], NULL) && args[i] != NULL;
  }
  int res = -ENOMEM;
  if (ok) {
    // Node marks the standard descriptors close-on-exec; the new program must have them.
    for (int fd = 0; fd <= 2; fd++) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0 && (fl & FD_CLOEXEC)) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
    execv(path, args);
    res = -errno;
  }
  for (uint32_t i = 0; args && i < n; i++) free(args[i]);
  free(args);
  free(path);
  if (!ok) {
    napi_throw_type_error(env, NULL, "execv: every argument must be a Buffer without NUL");
    return NULL;
  }
  return num(env, res);
}

// seqpacketPair() -> [fd, fd]: a connected SOCK_SEQPACKET pair. Each write is one message and
// each read returns one, as /dev/fuse does, so tests can speak the FUSE protocol to a channel.
static napi_value js_seqpacket_pair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    napi_throw_error(env, NULL, strerror(errno));
    return NULL;
  }
  napi_value arr;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  napi_set_element(env, arr, 0, num(env, sv[0]));
  napi_set_element(env, arr, 1, num(env, sv[1]));
  return arr;
}

// ---- descriptor passing between unrelated processes ----------------------------------------
// A FUSE server hands its /dev/fuse descriptors to a successor that is not its child (another
// pod) over an AF_UNIX SOCK_SEQPACKET socket with SCM_RIGHTS. Every socket here is
// non-blocking, and every wait is a poll() with a timeout the caller gives, so that a peer that
// stops answering never blocks the event loop longer than that.

// Most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
#define FDPASS_MAX_FDS 250
// Most bytes one message carries: what the default socket buffers take in one piece.
#define FDPASS_MAX_BYTES (128 * 1024)

static int unix_address(napi_env env, napi_value v, struct sockaddr_un *sa) {
  char *path;
  size_t len = 0;
  if (!arg_cstr(env, v, &path, &len) || !path) return -EINVAL;
  if (len == 0 || len >= sizeof sa->sun_path) {
    free(path);
    return -ENAMETOOLONG;
  }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  memcpy(sa->sun_path, path, len);
  free(path);
  return 0;
}

// Waits up to timeout_ms for events on fd: 0 when they came, -ETIMEDOUT, or -errno.
static int wait_for(int fd, short events, int64_t timeout_ms) {
  struct pollfd p = {.fd = fd, .events = events};
  if (timeout_ms < 0) timeout_ms = 0;
  if (timeout_ms > 60000) timeout_ms = 60000;
  for (;;) {
    int r = poll(&p, 1, (int)timeout_ms);
    if (r > 0) return 0;
    if (r == 0) return -ETIMEDOUT;
    if (errno != EINTR) return -errno;
  }
}

// unixListen(path, backlog) -> fd | -errno: a listening SOCK_SEQPACKET socket (non-blocking,
// close-on-exec). The caller sets the umask it is born with.
// The (path: Buffer, n: lo..hi) arguments of unixListen and unixConnect: 1 when both are good, 0
// when a TypeError was thrown (the caller returns NULL), or -errno for a path that cannot be one.
static int path_and_int(napi_env env, napi_callback_info info, int64_t lo, int64_t hi, const char *usage,
                        struct sockaddr_un *sa, int64_t *n) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int r = arg_i64(env, argv[1], n) && *n >= lo && *n <= hi ? unix_address(env, argv[0], sa) : -EINVAL;
  if (r == -EINVAL) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return r < 0 ? r : 1;
}

static napi_value js_unix_listen(napi_env env, napi_callback_info info) {
  struct sockaddr_un sa;
  int64_t backlog;
  int r = path_and_int(env, info, 1, 128, "unixListen(path: Buffer, backlog: 1..128)", &sa, &backlog);
  if (r == 0) return NULL;
  if (r < 0) return num(env, r);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return num(env, -errno);
  if (bind(s, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s, (int)backlog) != 0) {
    int e = errno;
    close(s);
    return num(env, -e);
  }
  return num(env, s);
}

// unixAccept(fd, timeoutMs) -> fd | -errno (-ETIMEDOUT when nobody connected in time).
static napi_value js_unix_accept(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  get_args(env, info, 2, argv);
  int64_t fd, timeout;
  if (!arg_i64(env, argv[0], &fd) || !arg_i64(env, argv[1], &timeout)) {
    napi_throw_type_error(env, NULL, "unixAccept(fd, timeoutMs)");
    return NULL;
  }
  int w = wait_for((int)fd, POLLIN, timeout);
  if (w < 0) return num(env, w);
  int c = accept4((int)fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  return num(env, c < 0 ? -errno : c);
}

// unixConnect(path, timeoutMs) -> fd | -errno: a connected SOCK_SEQPACKET socket (non-blocking,
// close-on-exec). A unix connect waits only while the listener's backlog is full; SO_SNDTIMEO
// bounds that wait.
static napi_value js_unix_connect(napi_env env, napi_callback_info info) {
  struct sockaddr_un sa;
  int64_t timeout;
  int r = path_and_int(env, info, 1, 60000, "unixConnect(path: Buffer, timeoutMs: 1..60000)", &sa, &timeout);
  if (r == 0) return NULL;
  if (r < 0) return num(env, r);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return num(env, -errno);
  struct timeval tv = {.tv_sec = timeout / 1000, .tv_usec = (timeout % 1000) * 1000};
  int fl;
  if (setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) != 0 ||
      (fl = fcntl(s, F_GETFL)) < 0 || fcntl(s, F_SETFL, fl | O_NONBLOCK) != 0) {
    int e = errno == EAGAIN || errno == EINPROGRESS ? ETIMEDOUT : errno;
    close(s);
    return num(env, -e);
  }
  return num(env, s);
}

// fdSend(fd, data, fds, timeoutMs) -> bytes sent | -errno: one message of 1..FDPASS_MAX_BYTES
// bytes carrying 0..FDPASS_MAX_FDS descriptors (SCM_RIGHTS). A wrong count or a non-descriptor
// is a TypeError: nothing is sent.
static napi_value js_fd_send(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  get_args(env, info, 4, argv);
  int64_t fd, timeout;
  void *data;
  size_t len;
  bool isarr = false;
  uint32_t nfds = 0;
  if (!arg_i64(env, argv[0], &fd) || napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok || len == 0 || len > FDPASS_MAX_BYTES ||
      napi_is_array(env, argv[2], &isarr) != napi_ok || !isarr || napi_get_array_length(env, argv[2], &nfds) != napi_ok ||
      nfds > FDPASS_MAX_FDS || !arg_i64(env, argv[3], &timeout)) {
    napi_throw_type_error(env, NULL, "fdSend(fd, data: Buffer of 1..131072 bytes, fds: at most 250 descriptors, timeoutMs)");
    return NULL;
  }
  int fds[FDPASS_MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value e;
    int64_t v;
    if (napi_get_element(env, argv[2], i, &e) != napi_ok || !arg_i64(env, e, &v) || v < 0 || v > INT32_MAX) {
      napi_throw_type_error(env, NULL, "fdSend: every descriptor must be a non-negative integer");
      return NULL;
    }
    fds[i] = (int)v;
  }
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  int w = wait_for((int)fd, POLLOUT, timeout);
  if (w < 0) return num(env, w);
  ssize_t n;
  do n = sendmsg((int)fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) return num(env, errno == EAGAIN ? -ETIMEDOUT : -errno);
  return num(env, (double)n);
}

// fdRecv(fd, maxBytes, maxFds, timeoutMs) -> [Buffer, fds] | -errno. The descriptors arrive
// close-on-exec. An empty Buffer without descriptors: the peer closed its end. A message longer
// than maxBytes (-EMSGSIZE) or with more than maxFds descriptors (-ETOOMANYREFS) is refused,
// and whatever descriptors it brought are closed.
static napi_value js_fd_recv(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  get_args(env, info, 4, argv);
  int64_t fd, maxb, maxf, timeout;
  if (!arg_i64(env, argv[0], &fd) || !arg_i64(env, argv[1], &maxb) || maxb < 1 || maxb > FDPASS_MAX_BYTES || !arg_i64(env, argv[2], &maxf) ||
      maxf < 0 || maxf > FDPASS_MAX_FDS || !arg_i64(env, argv[3], &timeout)) {
    napi_throw_type_error(env, NULL, "fdRecv(fd, maxBytes: 1..131072, maxFds: 0..250, timeoutMs)");
    return NULL;
  }
  int w = wait_for((int)fd, POLLIN, timeout);
  if (w < 0) return num(env, w);
  uint8_t *data = malloc((size_t)maxb);
  if (!data) return num(env, -ENOMEM);
  // Room for more than maxFds, so that a message with too many is seen (and its extras closed).
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * (FDPASS_MAX_FDS + 8))];
  } ctl;
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)maxb};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do n = recvmsg((int)fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    int e = errno == EAGAIN ? ETIMEDOUT : errno;
    free(data);
    return num(env, -e);
  }
  int got[FDPASS_MAX_FDS + 8];
  size_t ngot = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *p = (int *)CMSG_DATA(c);
    for (size_t i = 0; i < k && ngot < sizeof got / sizeof got[0]; i++) memcpy(&got[ngot++], p + i, sizeof(int));
  }
  int err = 0;
  if (m.msg_flags & MSG_TRUNC) err = EMSGSIZE;
  else if ((m.msg_flags & MSG_CTRUNC) || ngot > (size_t)maxf) err = ETOOMANYREFS;
  if (err) {
    for (size_t i = 0; i < ngot; i++) close(got[i]);
    free(data);
    return num(env, -err);
  }
  napi_value arr, buf, fds;
  void *bdata;
  CHECK(napi_create_buffer_copy(env, (size_t)n, data, &bdata, &buf));
  free(data);
  CHECK(napi_create_array_with_length(env, ngot, &fds));
  for (size_t i = 0; i < ngot; i++) napi_set_element(env, fds, (uint32_t)i, num(env, got[i]));
  CHECK(napi_create_array_with_length(env, 2, &arr));
  napi_set_element(env, arr, 0, buf);
  napi_set_element(env, arr, 1, fds);
  return arr;
}

static napi_value js_constants(napi_env env) {
  napi_value o;
  napi_create_object(env, &o);
  struct {
    const char *k;
    double v;
  } c[] = {
      {"OP_LOOKUP", OP_LOOKUP}, {"OP_STAT", OP_STAT}, {"OP_LIST", OP_LIST}, {"OP_READLINK", OP_READLINK},
      {"OP_OPEN", OP_OPEN}, {"OP_PREAD", OP_PREAD}, {"OP_CLOSE", OP_CLOSE}, {"OP_STATFS", OP_STATFS},
      {"OP_OPENROOT", OP_OPENROOT}, {"OP_MOUNT", OP_MOUNT}, {"OP_UMOUNT", OP_UMOUNT}, {"OP_GETXATTR", OP_GETXATTR},
      {"OP_SLEEP", OP_SLEEP}, {"OP_ISMOUNT", OP_ISMOUNT}, {"FLAG_OPAQUE", FLAG_OPAQUE}, {"FLAG_XATTR_ERROR", FLAG_XATTR_ERROR}, {"FLAG_WHITEOUT", FLAG_WHITEOUT}, {"REC_HEAD", REC_HEAD},
      {"ATTR_SIZE", ATTR_SIZE}, {"SLOT_COUNT", SLOT_COUNT}, {"MS_RDONLY", MS_RDONLY}, {"MS_NOSUID", MS_NOSUID},
      {"MS_NODEV", MS_NODEV}, {"MNT_DETACH", MNT_DETACH}, {"MNT_FORCE", MNT_FORCE}, {"UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) napi_set_named_property(env, o, c[i].k, num(env, c[i].v));
  return o;
}

// In idle_memory.cc: it needs V8's C++ API.
napi_value cvmfs_reduce_memory(napi_env env, napi_callback_info info);

static napi_value init(napi_env env, napi_value exports) {
  if (main_env) {
    napi_throw_error(env, NULL, "cvmfs_sys is loaded once per process, on the main thread");
    return NULL;
  }
  main_env = env;
  slots = malloc((size_t)SLOT_SIZE * SLOT_COUNT);
  slot_lens = calloc(SLOT_COUNT, sizeof *slot_lens);
  if (!slots || !slot_lens) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (uv_async_init(loop, &done_async, on_done) != 0) {
    napi_throw_error(env, NULL, "uv_async_init failed");
    return NULL;
  }
  uv_unref((uv_handle_t *)&done_async);
  // Never keeps the process alive by itself: jobs in flight hold done_async.
  uv_timer_init(loop, &grow_timer);
  uv_unref((uv_handle_t *)&grow_timer);
  napi_value name, resource;
  napi_create_string_utf8(env, "cvmfs_sys", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_async_init(env, NULL, name, &async_ctx));
  // One resource object for every callback scope: an object per request costs for nothing.
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_reference(env, resource, 1, &resource_ref));

  napi_property_descriptor props[] = {
      {"setHandlers", NULL, js_set_handlers, NULL, NULL, NULL, napi_default, NULL},
      {"requestSlots", NULL, js_request_slots, NULL, NULL, NULL, napi_default, NULL},
      {"channelStart", NULL, js_channel_start, NULL, NULL, NULL, napi_default, NULL},
      {"channelStop", NULL, js_channel_stop, NULL, NULL, NULL, napi_default, NULL},
      {"setBlocking", NULL, js_set_blocking, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL},
      {"writev", NULL, js_writev, NULL, NULL, NULL, napi_default, NULL},
      {"submit", NULL, js_submit, NULL, NULL, NULL, napi_default, NULL},
      {"poolConfig", NULL, js_pool_config, NULL, NULL, NULL, napi_default, NULL},
      {"poolStats", NULL, js_pool_stats, NULL, NULL, NULL, napi_default, NULL},
      {"setBusyPoll", NULL, js_set_busy_poll, NULL, NULL, NULL, napi_default, NULL},
      {"setHiddenXattrs", NULL, js_set_hidden_xattrs, NULL, NULL, NULL, napi_default, NULL},
      {"backingClose", NULL, js_backing_close, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"execv", NULL, js_execv, NULL, NULL, NULL, napi_default, NULL},
      {"reduceMemory", NULL, cvmfs_reduce_memory, NULL, NULL, NULL, napi_default, NULL},
      {"seqpacketPair", NULL, js_seqpacket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"unixListen", NULL, js_unix_listen, NULL, NULL, NULL, napi_default, NULL},
      {"unixAccept", NULL, js_unix_accept, NULL, NULL, NULL, napi_default, NULL},
      {"unixConnect", NULL, js_unix_connect, NULL, NULL, NULL, napi_default, NULL},
      {"fdSend", NULL, js_fd_send, NULL, NULL, NULL, napi_default, NULL},
      {"fdRecv", NULL, js_fd_recv, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  napi_set_named_property(env, exports, "constants", js_constants(env));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
