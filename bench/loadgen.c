/*
 * Load generator for `deno task bench`: one thread, epoll, non-blocking
 * sockets, so that on its own CPU it drives a server harder than the server
 * can answer. bench.ts compiles it with `cc -O2` at bench time (with OpenSSL
 * when its headers are there: -DWITH_TLS -lssl -lcrypto) and falls back to
 * bench/load.ts (same options, same output) when there is no compiler.
 *
 *   loadgen rr     --port P [--conns N] [--size B] [--depth D] [--tls]  round trips
 *   loadgen stream --port P [--conns N] [--size B] [--tls]              echo MB/s
 *   loadgen udp    --port P [--conns N] [--size B]               UDP round trips
 *   loadgen chat   --port P [--conns N] [--size B] [--depth D]   all clients talk
 *   loadgen burst  --port P [--conns N] [--size B] [--lines L]   1 talker, N-1 readers
 *   loadgen paced  --port P [--conns N] [--size B] [--rate R]    1 talker at R lines/s
 *   loadgen rpc    --port P [--conns N] [--depth D]              JSON-RPC add calls
 *   loadgen dns    --port P [--conns N] [--queries NAME/TYPE,…]  DNS over UDP
 *   loadgen upload --port P --file F [--name NAME] [--raw]       one upload
 *
 * Common: --host H (IPv4, default 127.0.0.1), --warmup S, --duration S,
 * --pids P1,P2 (the server's processes: their CPU seconds in the window are
 * reported as "server_cpu"). paced also reports the lines it "sent".
 * TLS (rr, stream): --tls, --cacert FILE (verify against it), --servername.
 * Chat modes: --ws PATH speaks WebSocket (one text message per line) instead
 * of lines; --port2 P puts every odd client on a second server.
 * Closed loop everywhere but burst and paced: each connection keeps --depth
 * messages in flight and sends the next one only when one comes back, so the
 * figure measures the server, not how much we can queue in kernel buffers.
 *
 * Output: "measuring" on stdout when the warm-up ends, then one JSON line
 * when the window closes, e.g.
 *   {"ops":123,"bytes":456,"seconds":2.0,"cpu":0.4,"p50_us":12,"p99_us":40,"errors":0}
 * where ops/bytes count what happened in the measured window (after warm-up),
 * and cpu is this process's user+system CPU seconds in that window: if cpu is
 * close to seconds, the load generator itself was the bottleneck.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

static const char *host = "127.0.0.1";
static int port = 0;
static int port2 = 0; /* chat modes: odd clients connect here when set */
static int conns = 1;
static int size = 64;
static int depth = 1;
static double warmup = 0.5;
static double duration = 2.0;
static const char *file = NULL;
static const char *name = "bench.bin";
static int raw = 0; /* upload without the UPLOAD header (the nc baseline) */
static int tls = 0;
static const char *cacert = NULL;
static const char *servername = "localhost";
static const char *ws_path = NULL; /* chat over WebSocket at this path */
static long lines = 20000;        /* burst: lines the talker sends */
static double rate = 2000;        /* paced: lines per second */
static double timeout = 60;       /* burst: give up after this long */
static const char *queries = "www.bench.test/A";
static const char *pids = NULL; /* the server's processes, for its CPU time */

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

static struct sockaddr_in address_for(int which_port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(which_port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
    exit(2);
  }
  return a;
}

static void set_nonblocking(int fd) {
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
}

/* A blocking connect (simple, and fine before the clock starts). */
static int tcp_connect_to(int which_port) {
  struct sockaddr_in a = address_for(which_port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  return fd;
}

static int tcp_connect(void) { return tcp_connect_to(port); }

/* ---- a connection that may speak TLS (rr and stream) ---- */
struct link {
  int fd;
#ifdef WITH_TLS
  SSL *ssl;
#endif
};

#ifdef WITH_TLS
static SSL_CTX *tls_context;

static void tls_die(const char *what) {
  unsigned long code = ERR_get_error();
  fprintf(stderr, "loadgen: %s: %s\n", what,
          code ? ERR_error_string(code, NULL) : "failed");
  exit(1);
}
#endif

/* Connects (and with --tls completes the handshake) before the clock runs. */
static struct link link_connect(void) {
  struct link l = {.fd = tcp_connect()};
  if (!tls) return l;
#ifdef WITH_TLS
  if (!tls_context) {
    tls_context = SSL_CTX_new(TLS_client_method());
    if (!tls_context) tls_die("SSL_CTX_new");
    if (cacert) {
      if (!SSL_CTX_load_verify_locations(tls_context, cacert, NULL))
        tls_die(cacert);
      SSL_CTX_set_verify(tls_context, SSL_VERIFY_PEER, NULL);
    }
    /* A write may be partial, and its retry may come from a new place. */
    SSL_CTX_set_mode(tls_context, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  l.ssl = SSL_new(tls_context);
  SSL_set_fd(l.ssl, l.fd);
  SSL_set_tlsext_host_name(l.ssl, servername);
  if (cacert) SSL_set1_host(l.ssl, servername);
  if (SSL_connect(l.ssl) != 1) tls_die("TLS handshake");
  return l;
#else
  fprintf(stderr, "loadgen: built without OpenSSL, --tls unavailable\n");
  exit(3);
#endif
}

/* read(2)/write(2) semantics: > 0 bytes, 0 closed, -1 with errno (EAGAIN). */
static ssize_t link_read(struct link *l, void *buffer, size_t length) {
#ifdef WITH_TLS
  if (l->ssl) {
    int n = SSL_read(l->ssl, buffer, (int)length);
    if (n > 0) return n;
    int why = SSL_get_error(l->ssl, n);
    if (why == SSL_ERROR_ZERO_RETURN) return 0;
    errno = why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE ? EAGAIN
                                                                       : EIO;
    return -1;
  }
#endif
  return read(l->fd, buffer, length);
}

static ssize_t link_write(struct link *l, const void *buffer, size_t length) {
#ifdef WITH_TLS
  if (l->ssl) {
    int n = SSL_write(l->ssl, buffer, (int)length);
    if (n > 0) return n;
    int why = SSL_get_error(l->ssl, n);
    errno = why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE ? EAGAIN
                                                                       : EIO;
    return -1;
  }
#endif
  return write(l->fd, buffer, length);
}

/* ---- latency histogram: 10 µs buckets up to 10 s ---- */
#define BUCKETS 1000000
static uint32_t *histogram;
static uint64_t samples;

static void record_latency(double seconds) {
  long bucket = (long)(seconds * 1e5);
  if (bucket < 0) bucket = 0;
  if (bucket >= BUCKETS) bucket = BUCKETS - 1;
  histogram[bucket]++;
  samples++;
}

static double percentile_us(double p) {
  if (samples == 0) return 0;
  uint64_t rank = (uint64_t)(samples * p), seen = 0;
  for (long i = 0; i < BUCKETS; i++) {
    seen += histogram[i];
    if (seen > rank) return i * 10.0 + 5;
  }
  return BUCKETS * 10.0;
}

/* CPU seconds of one process from the run times of its threads, in
 * nanoseconds (/proc/PID/task/TID/schedstat), or from its user + system
 * clock ticks (/proc/PID/stat: 10 ms steps, coarse for a 0.1 s burst) where
 * there are no schedstat files; -1 if the process is gone. */
static double process_cpu_seconds(long pid) {
  char path[128];
  snprintf(path, sizeof path, "/proc/%ld/task", pid);
  DIR *tasks = opendir(path);
  if (tasks) {
    double total = 0;
    int found = 0;
    struct dirent *task;
    while ((task = readdir(tasks))) {
      if (task->d_name[0] == '.') continue;
      snprintf(path, sizeof path, "/proc/%ld/task/%.20s/schedstat", pid,
               task->d_name);
      FILE *f = fopen(path, "r");
      if (!f) continue;
      unsigned long long nanoseconds;
      if (fscanf(f, "%llu", &nanoseconds) == 1) {
        total += nanoseconds / 1e9;
        found = 1;
      }
      fclose(f);
    }
    closedir(tasks);
    if (found) return total;
  }
  char stat[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return -1;
  stat[n] = '\0';
  /* Fields after the ")" closing the name: state is the 3rd field of the
   * line, utime and stime the 14th and 15th, in clock ticks. */
  char *field = strrchr(stat, ')');
  unsigned long long utime = 0, stime = 0;
  if (!field ||
      sscanf(field + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
             &utime, &stime) != 2)
    return -1;
  return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

/* CPU seconds of all the server's processes (--pids), -1 if not asked for
 * or unreadable. Read here, at the window's edges, rather than by bench.ts
 * after our output reaches it: a burst can last 0.1 s. */
static double server_cpu_seconds(void) {
  if (!pids) return -1;
  double total = 0;
  const char *p = pids;
  while (*p) {
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p) return -1;
    double seconds = process_cpu_seconds(pid);
    if (seconds < 0) return -1;
    total += seconds;
    p = *end == ',' ? end + 1 : end;
  }
  return total;
}

/* ---- the measured window ---- */
static double t_start, t_measure, t_end, cpu_start, server_cpu_start;
static uint64_t ops, bytes, errors;
static int64_t lines_sent = -1; /* paced: lines sent in the window */
static int measuring = 0;

static void begin(void) {
  t_start = now();
  t_measure = t_start + warmup;
  t_end = t_measure + duration;
}

/* Starts the window now: counters reset, bench.ts told to start its clock. */
static void start_measuring(void) {
  measuring = 1;
  ops = bytes = errors = 0;
  if (lines_sent > 0) lines_sent = 0;
  samples = 0;
  memset(histogram, 0, BUCKETS * sizeof *histogram);
  cpu_start = cpu_seconds();
  server_cpu_start = server_cpu_seconds();
  t_measure = now();
  printf("measuring\n");
  fflush(stdout);
}

/* Called between events: starts the window after warm-up; false when done. */
static int tick(void) {
  double t = now();
  if (!measuring && t >= t_measure) start_measuring();
  return t < t_end;
}

static void report(void) {
  double seconds = now() - t_measure;
  double server_cpu = server_cpu_seconds();
  printf("{\"ops\":%llu,\"bytes\":%llu,\"seconds\":%.4f,\"cpu\":%.4f,"
         "\"p50_us\":%.0f,\"p99_us\":%.0f,\"errors\":%llu",
         (unsigned long long)ops, (unsigned long long)bytes, seconds,
         cpu_seconds() - cpu_start, percentile_us(0.50), percentile_us(0.99),
         (unsigned long long)errors);
  if (server_cpu >= 0 && server_cpu_start >= 0)
    printf(",\"server_cpu\":%.4f", server_cpu - server_cpu_start);
  if (lines_sent >= 0) printf(",\"sent\":%lld", (long long)lines_sent);
  printf("}\n");
  fflush(stdout);
}

/* ---- output owed to a non-blocking socket (rr, chat, rpc) ---- */

/* Has epoll wake `owner` for EPOLLOUT only while it owes output: one
 * epoll_ctl when that changes, none per write. */
static void watch_writable(int epoll, int fd, void *owner, int *waiting,
                           int owes) {
  if (*waiting == owes) return;
  *waiting = owes;
  struct epoll_event ev = {.events = EPOLLIN | (owes ? EPOLLOUT : 0),
                           .data.ptr = owner};
  epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &ev);
}

/* Bytes queued for a socket (chat lines, rpc calls), sent as it takes them. */
struct out_queue {
  char data[65536];
  int len;
  int waiting; /* registered for EPOLLOUT */
};

/* Writes the queue until the socket is full, keeps the rest, and waits for
 * EPOLLOUT (delivered to `owner`) while any is left. */
static void out_flush(struct out_queue *q, int fd, int epoll, void *owner) {
  int sent = 0;
  while (sent < q->len) {
    ssize_t n = write(fd, q->data + sent, q->len - sent);
    if (n < 0) {
      if (errno != EAGAIN) die("write");
      break;
    }
    sent += n;
  }
  memmove(q->data, q->data + sent, q->len - sent);
  q->len -= sent;
  watch_writable(epoll, fd, owner, &q->waiting, q->len > 0);
}

/* ---- rr: TCP round trips of --size bytes, --depth in flight per conn ---- */
struct rr_conn {
  struct link link;
  int received; /* bytes of the current reply received so far */
  int unsent;   /* bytes owed to the socket (only when it was full) */
  int waiting;  /* registered for EPOLLOUT */
};

static char filler[65536]; /* what rr writes: only the length matters */

/* Writes what is owed; when the socket is full, waits for EPOLLOUT. */
static void rr_flush(struct rr_conn *c, int epoll) {
  while (c->unsent > 0) {
    /* The same length again after EAGAIN: what a TLS retry requires. */
    int chunk = c->unsent < (int)sizeof filler ? c->unsent : (int)sizeof filler;
    ssize_t n = link_write(&c->link, filler, chunk);
    if (n < 0) {
      if (errno != EAGAIN) die("write");
      break;
    }
    c->unsent -= n;
  }
  watch_writable(epoll, c->link.fd, c, &c->waiting, c->unsent > 0);
}

static void rr_send(struct rr_conn *c, int epoll) {
  int idle = c->unsent == 0;
  c->unsent += size;
  if (idle) rr_flush(c, epoll);
}

static int run_rr(void) {
  memset(filler, 'x', sizeof filler);
  char buffer[65536];
  struct rr_conn *all = calloc(conns, sizeof *all);
  int epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    all[i].link = link_connect();
    set_nonblocking(all[i].link.fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i]};
    epoll_ctl(epoll, EPOLL_CTL_ADD, all[i].link.fd, &ev);
  }
  begin();
  for (int i = 0; i < conns; i++)
    for (int d = 0; d < depth; d++) rr_send(&all[i], epoll);
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      struct rr_conn *c = events[e].data.ptr;
      if (events[e].events & EPOLLOUT) rr_flush(c, epoll);
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      /* TLS may hold several records: read until the socket is dry. */
      ssize_t got;
      while ((got = link_read(&c->link, buffer, sizeof buffer)) > 0) {
        bytes += got;
        c->received += got;
        while (c->received >= size) {
          c->received -= size;
          ops++;
          rr_send(c, epoll);
        }
        if (!tls) break; /* plain TCP: epoll tells us when there is more */
      }
      if (got == 0 || (got < 0 && errno != EAGAIN)) {
        fprintf(stderr, "loadgen: server closed a connection\n");
        exit(1);
      }
    }
  }
  report();
  return 0;
}

/* ---- stream: every connection writes and reads as fast as it can ---- */
static int run_stream(void) {
  char *out = malloc(size);
  memset(out, 'x', size);
  char *in = malloc(1 << 20);
  struct link *all = calloc(conns, sizeof *all);
  int epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    all[i] = link_connect();
    set_nonblocking(all[i].fd);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &all[i]};
    epoll_ctl(epoll, EPOLL_CTL_ADD, all[i].fd, &ev);
  }
  begin();
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      struct link *l = events[e].data.ptr;
      if (events[e].events & EPOLLOUT) {
        ssize_t put = link_write(l, out, size);
        if (put < 0 && errno != EAGAIN) die("write");
      }
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t got;
        while ((got = link_read(l, in, 1 << 20)) > 0) {
          bytes += got;
          ops++;
          if (!tls) break;
        }
        if (got == 0 || (got < 0 && errno != EAGAIN)) {
          fprintf(stderr, "loadgen: server closed a connection\n");
          exit(1);
        }
      }
    }
  }
  report();
  return 0;
}

/* ---- udp: one datagram in flight per socket, resent if lost ---- */
/* (dns, below, works the same way with queries for datagrams.) */
static int *dgram_fds;     /* --conns UDP sockets, connected to the server */
static double *dgram_sent; /* when each one's datagram went out */

/* Opens the sockets, non-blocking, each in `epoll` with its index. */
static void dgram_open(int epoll) {
  struct sockaddr_in a = address_for(port);
  dgram_fds = calloc(conns, sizeof *dgram_fds);
  dgram_sent = calloc(conns, sizeof *dgram_sent);
  for (int i = 0; i < conns; i++) {
    dgram_fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (dgram_fds[i] < 0) die("socket");
    if (connect(dgram_fds[i], (struct sockaddr *)&a, sizeof a) < 0)
      die("connect");
    set_nonblocking(dgram_fds[i]);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(epoll, EPOLL_CTL_ADD, dgram_fds[i], &ev);
  }
}

/* A datagram may be dropped under load: each socket still without its
 * answer 200 ms after sending counts an error and sends again. */
static void dgram_resend_lost(double t, void (*send_again)(int i, double t)) {
  for (int i = 0; i < conns; i++) {
    if (t - dgram_sent[i] > 0.2) {
      errors++;
      send_again(i, t);
    }
  }
}

static char *udp_message;

/* Sends socket i's datagram, stamped `t`. */
static void udp_send(int i, double t) {
  send(dgram_fds[i], udp_message, size, 0);
  dgram_sent[i] = t;
}

static int run_udp(void) {
  udp_message = malloc(size);
  memset(udp_message, 'x', size);
  char buffer[65536];
  int epoll = epoll_create1(0);
  dgram_open(epoll);
  begin();
  for (int i = 0; i < conns; i++) udp_send(i, now());
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    double t = now();
    for (int e = 0; e < n; e++) {
      int i = events[e].data.u32;
      ssize_t got;
      while ((got = recv(dgram_fds[i], buffer, sizeof buffer, 0)) >= 0) {
        ops++;
        bytes += got;
        record_latency(t - dgram_sent[i]);
        udp_send(i, t);
      }
    }
    dgram_resend_lost(t, udp_send);
  }
  report();
  return 0;
}

/*
 * ---- chat, burst, paced: a room of --conns clients ----
 * A line is "m ~SENDER SEQ NANOS xxx…\n"; whatever the server puts before
 * it ("guest7: ", "<user7> ") is skipped by looking for '~'. Lines without
 * '~' (welcome, joined, left) are ignored. With --ws each line travels as one
 * WebSocket text message, without its "\n".
 *   chat:  every client keeps --depth lines in flight; a line counts as
 *          delivered at each other client, and once all have it its sender
 *          sends another (closed loop).
 *   burst: client 0 sends --lines lines as fast as the server takes them;
 *          the figure is deliveries ÷ time until the last reader has the
 *          last line (after an unmeasured burst of a tenth for warm-up).
 *   paced: client 0 sends --rate lines per second, one write each; the
 *          figure is each delivery's latency at the other clients.
 */
enum { CHAT_LOOP, CHAT_BURST, CHAT_PACED } chat_kind;

struct chat_conn {
  int fd;
  uint32_t sequence;
  char in[65536];
  int in_len;
  struct out_queue out;
  int welcomed;
  int upgraded; /* --ws: the 101 response has been read */
};
static struct chat_conn *clients;
static uint16_t *pending_deliveries; /* [sender * depth + seq % depth] */
static int chat_epoll;
static long burst_queued;    /* burst: lines client 0 still has to queue */
static uint64_t delivered;   /* burst: deliveries of the current phase */
static uint32_t phase_first; /* burst: first sequence number of the phase */

static void chat_flush(struct chat_conn *c) {
  out_flush(&c->out, c->fd, chat_epoll, c);
}

/* Appends one line (or one WebSocket frame holding it) to the out queue. */
static int chat_queue(struct chat_conn *c) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  unsigned long long nanos = t.tv_sec * 1000000000ULL + t.tv_nsec;
  char line[512];
  int len = snprintf(line, sizeof line, "m ~%d %u %llu ", (int)(c - clients),
                     c->sequence++, nanos);
  while (len < size - 1 && len < (int)sizeof line - 2) line[len++] = 'x';
  if (!ws_path) line[len++] = '\n';
  int frame = ws_path ? len + (len < 126 ? 6 : 8) : len;
  if (c->out.len + frame > (int)sizeof c->out.data) return 0;
  char *p = c->out.data + c->out.len;
  if (ws_path) {
    /* FIN + text; client frames are masked (RFC 6455 §5.3). */
    static const unsigned char mask[4] = {0x5a, 0x3c, 0x96, 0xe1};
    *p++ = (char)0x81;
    if (len < 126) {
      *p++ = (char)(0x80 | len);
    } else {
      *p++ = (char)(0x80 | 126);
      *p++ = (char)(len >> 8);
      *p++ = (char)(len & 0xff);
    }
    memcpy(p, mask, 4);
    p += 4;
    for (int i = 0; i < len; i++) p[i] = line[i] ^ mask[i & 3];
  } else {
    memcpy(p, line, len);
  }
  c->out.len += frame;
  return 1;
}

static void chat_send(struct chat_conn *c) {
  if (!chat_queue(c)) {
    fprintf(stderr, "loadgen: chat output queue overflow\n");
    exit(1);
  }
  chat_flush(c);
}

/* burst: keeps client 0's queue topped up with the lines still owed. */
static void burst_fill(void) {
  struct chat_conn *c = &clients[0];
  while (burst_queued > 0 && c->out.len < (int)sizeof c->out.data / 2) {
    if (!chat_queue(c)) break;
    burst_queued--;
  }
  chat_flush(c);
}

static void chat_line(const char *line, const char *end) {
  const char *mark = memchr(line, '~', end - line);
  if (!mark) return;
  char text[80]; /* "SENDER SEQ NANOS", NUL-terminated for strtol */
  int n = end - mark - 1 < (int)sizeof text - 1 ? end - mark - 1
                                                  : (int)sizeof text - 1;
  memcpy(text, mark + 1, n);
  text[n] = '\0';
  char *rest;
  long sender = strtol(text, &rest, 10);
  unsigned long sequence = strtoul(rest, &rest, 10);
  unsigned long long nanos = strtoull(rest, &rest, 10);
  if (sender < 0 || sender >= conns) {
    errors++;
    return;
  }
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  unsigned long long arrived = t.tv_sec * 1000000000ULL + t.tv_nsec;
  ops++;
  record_latency((arrived - nanos) / 1e9);
  if (chat_kind == CHAT_BURST) {
    if (sender == 0 && sequence >= phase_first) delivered++;
    return;
  }
  if (chat_kind != CHAT_LOOP) return;
  uint16_t *slot = &pending_deliveries[sender * depth + sequence % depth];
  if (++*slot == conns - 1) {
    *slot = 0;
    chat_send(&clients[sender]);
  }
}

static void chat_closed(struct chat_conn *c) {
  fprintf(stderr, "loadgen: the chat server closed client %d\n",
          (int)(c - clients));
  exit(1);
}

/* --ws: consumes the 101 response, then whole frames; returns bytes used. */
static int ws_consume(struct chat_conn *c) {
  unsigned char *in = (unsigned char *)c->in;
  int used = 0;
  if (!c->upgraded) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return 0;
    if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) {
      fprintf(stderr, "loadgen: WebSocket upgrade refused: %.40s\n", c->in);
      exit(1);
    }
    c->upgraded = 1;
    used = end + 4 - c->in;
  }
  while (c->in_len - used >= 2) {
    unsigned char *f = in + used;
    int opcode = f[0] & 0x0f, header = 2;
    uint64_t length = f[1] & 0x7f;
    if (length == 126) {
      if (c->in_len - used < 4) break;
      length = (f[2] << 8) | f[3];
      header = 4;
    } else if (length == 127) {
      if (c->in_len - used < 10) break;
      length = 0;
      for (int i = 2; i < 10; i++) length = (length << 8) | f[i];
      header = 10;
    }
    if (f[1] & 0x80) header += 4; /* a masked server frame: not expected */
    if (length > sizeof c->in - 16) {
      fprintf(stderr, "loadgen: WebSocket message too large\n");
      exit(1);
    }
    if ((uint64_t)(c->in_len - used) < header + length) break;
    char *payload = (char *)f + header;
    if (opcode == 8) chat_closed(c);
    if (opcode <= 2) {
      c->welcomed = 1;
      chat_line(payload, payload + length);
    }
    used += header + length;
  }
  return used;
}

static void chat_read(struct chat_conn *c) {
  while (1) {
    ssize_t got = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (got == 0 || (got < 0 && errno != EAGAIN)) chat_closed(c);
    if (got < 0) return;
    bytes += got;
    c->in_len += got;
    int used;
    if (ws_path) {
      used = ws_consume(c);
    } else {
      char *start = c->in, *end = c->in + c->in_len, *newline;
      while ((newline = memchr(start, '\n', end - start))) {
        c->welcomed = 1;
        chat_line(start, newline);
        start = newline + 1;
      }
      used = start - c->in;
    }
    c->in_len -= used;
    memmove(c->in, c->in + used, c->in_len);
    if (c->in_len == sizeof c->in) c->in_len = 0; /* absurd line: drop */
  }
}

static void chat_events(int timeout_ms) {
  struct epoll_event events[256];
  int n = epoll_wait(chat_epoll, events, 256, timeout_ms);
  for (int e = 0; e < n; e++) {
    struct chat_conn *c = events[e].data.ptr;
    if (events[e].events & EPOLLOUT) chat_flush(c);
    if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) chat_read(c);
  }
}

/* Join one client at a time and wait (at most 1 s) for its first line: a
 * welcome, or ncat's "<announce> already connected". Connecting all at once
 * overflows a small listen backlog (ncat's), and the dropped SYNs then cost
 * a 1 s retransmit each. */
static void chat_join_all(void) {
  clients = calloc(conns, sizeof *clients);
  pending_deliveries = calloc((size_t)conns * depth, sizeof *pending_deliveries);
  chat_epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    int which = port2 && (i & 1) ? port2 : port;
    clients[i].fd = tcp_connect_to(which);
    if (ws_path) {
      char request[512];
      int len = snprintf(request, sizeof request,
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: bG9hZGdlbiBiZW5jaGtleQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         ws_path, host, which);
      if (write(clients[i].fd, request, len) != len) die("write");
    }
    set_nonblocking(clients[i].fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &clients[i]};
    epoll_ctl(chat_epoll, EPOLL_CTL_ADD, clients[i].fd, &ev);
    double deadline = now() + 1.0;
    while (!clients[i].welcomed && now() < deadline) chat_events(10);
  }
  /* Let the last "joined" notices arrive before anything is measured. */
  double settle = now() + 0.05;
  while (now() < settle) chat_events(5);
}

static int run_chat(void) {
  chat_join_all();
  begin();
  for (int i = 0; i < conns; i++)
    for (int d = 0; d < depth; d++) chat_send(&clients[i]);
  while (tick()) chat_events(10);
  report();
  return 0;
}

/* One burst of `count` lines from client 0; true when all were delivered. */
static int burst_phase(long count) {
  uint64_t wanted = (uint64_t)count * (conns - 1);
  delivered = 0;
  phase_first = clients[0].sequence;
  burst_queued = count;
  double deadline = now() + timeout;
  burst_fill();
  while (delivered < wanted && now() < deadline) {
    chat_events(10);
    if (burst_queued > 0) burst_fill();
  }
  return delivered >= wanted;
}

static int run_burst(void) {
  chat_join_all();
  /* Warm-up (unmeasured): a tenth of the burst, all delivered. */
  if (warmup > 0 && !burst_phase(lines / 10 > 0 ? lines / 10 : 1)) {
    fprintf(stderr, "loadgen: warm-up burst not delivered within %.0f s\n",
            timeout);
    return 1;
  }
  start_measuring();
  int complete = burst_phase(lines);
  uint64_t wanted = (uint64_t)lines * (conns - 1);
  if (!complete) errors += wanted - delivered;
  ops = delivered;
  report();
  return 0;
}

static int run_paced(void) {
  chat_join_all();
  lines_sent = 0;
  int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  if (timer < 0) die("timerfd_create");
  long interval = (long)(1e9 / rate);
  struct itimerspec every = {
      .it_interval = {interval / 1000000000L, interval % 1000000000L},
      .it_value = {interval / 1000000000L, interval % 1000000000L}};
  if (timerfd_settime(timer, 0, &every, NULL) < 0) die("timerfd_settime");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(chat_epoll, EPOLL_CTL_ADD, timer, &ev);
  begin();
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(chat_epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      struct chat_conn *c = events[e].data.ptr;
      if (!c) {
        /* One line per tick, each its own write; ticks we were late for
         * are sent now (each stamped when sent). */
        uint64_t due = 0;
        if (read(timer, &due, sizeof due) != sizeof due) continue;
        for (uint64_t i = 0; i < due; i++) chat_send(&clients[0]);
        lines_sent += due;
        continue;
      }
      if (events[e].events & EPOLLOUT) chat_flush(c);
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) chat_read(c);
    }
  }
  report();
  return 0;
}

/* ---- rpc: JSON-RPC 2.0 "add" calls, --depth in flight per connection ---- */
#define RPC_SLOTS 1024
struct rpc_conn {
  int fd;
  uint32_t next_id;
  char in[65536];
  int in_len;
  struct out_queue out;
  double sent_at[RPC_SLOTS];
};

static void rpc_flush(struct rpc_conn *c, int epoll) {
  out_flush(&c->out, c->fd, epoll, c);
}

/* Queues one call: add(id, 1), whose result must be id + 1. */
static void rpc_queue(struct rpc_conn *c) {
  uint32_t id = c->next_id++;
  if (c->out.len + 128 > (int)sizeof c->out.data) {
    fprintf(stderr, "loadgen: rpc output queue overflow\n");
    exit(1);
  }
  c->out.len += snprintf(c->out.data + c->out.len, 128,
                         "{\"jsonrpc\":\"2.0\",\"id\":%u,\"method\":\"add\","
                         "\"params\":[%u,1]}\n",
                         id, id);
  c->sent_at[id % RPC_SLOTS] = now();
}

/* Checks one response line; true when it is the right result. */
static int rpc_response(struct rpc_conn *c, char *line, char *end) {
  *end = '\0';
  char *id_at = strstr(line, "\"id\":");
  char *result_at = strstr(line, "\"result\":");
  if (!id_at || !result_at) return 0;
  unsigned long id = strtoul(id_at + 5, NULL, 10);
  long result = strtol(result_at + 9, NULL, 10);
  record_latency(now() - c->sent_at[id % RPC_SLOTS]);
  return result == (long)id + 1;
}

static int run_rpc(void) {
  if (depth > RPC_SLOTS) {
    fprintf(stderr, "loadgen: rpc --depth at most %d\n", RPC_SLOTS);
    return 2;
  }
  struct rpc_conn *all = calloc(conns, sizeof *all);
  int epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    all[i].fd = tcp_connect();
    set_nonblocking(all[i].fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i]};
    epoll_ctl(epoll, EPOLL_CTL_ADD, all[i].fd, &ev);
  }
  begin();
  for (int i = 0; i < conns; i++) {
    for (int d = 0; d < depth; d++) rpc_queue(&all[i]);
    rpc_flush(&all[i], epoll);
  }
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      struct rpc_conn *c = events[e].data.ptr;
      if (events[e].events & EPOLLOUT) rpc_flush(c, epoll);
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      ssize_t got = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
      if (got == 0 || (got < 0 && errno != EAGAIN)) {
        fprintf(stderr, "loadgen: server closed a connection\n");
        exit(1);
      }
      if (got < 0) continue;
      bytes += got;
      c->in_len += got;
      char *start = c->in, *end = c->in + c->in_len, *newline;
      while ((newline = memchr(start, '\n', end - start))) {
        if (rpc_response(c, start, newline)) ops++;
        else errors++;
        rpc_queue(c); /* one answered, one more in flight */
        start = newline + 1;
      }
      c->in_len = end - start;
      memmove(c->in, start, c->in_len);
      if (c->in_len == sizeof c->in) c->in_len = 0; /* absurd line: drop */
      rpc_flush(c, epoll);
    }
  }
  report();
  return 0;
}

/* ---- dns: one query in flight per UDP socket, --queries in turn ---- */
struct dns_query {
  unsigned char packet[300];
  int length;
};

static int dns_type(const char *text) {
  static const struct { const char *name; int code; } types[] = {
      {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"MX", 15}, {"TXT", 16}, {"AAAA", 28}};
  for (size_t i = 0; i < sizeof types / sizeof *types; i++)
    if (strcasecmp(text, types[i].name) == 0) return types[i].code;
  return atoi(text);
}

/* "www.bench.test/A": a query packet with ID 0 (set per send), RD clear. */
static int dns_build(const char *spec, struct dns_query *q) {
  char name_text[256];
  const char *slash = strchr(spec, '/');
  int name_length = slash ? slash - spec : (int)strlen(spec);
  if (name_length <= 0 || name_length >= (int)sizeof name_text) return 0;
  memcpy(name_text, spec, name_length);
  name_text[name_length] = '\0';
  int type = slash ? dns_type(slash + 1) : 1;
  if (type <= 0) return 0;
  unsigned char *p = q->packet;
  memset(p, 0, 12);
  p[5] = 1; /* QDCOUNT = 1 */
  p += 12;
  for (char *label = strtok(name_text, "."); label; label = strtok(NULL, ".")) {
    size_t length = strlen(label);
    if (length > 63 || p + length + 6 >= q->packet + sizeof q->packet) return 0;
    *p++ = (unsigned char)length;
    memcpy(p, label, length);
    p += length;
  }
  *p++ = 0;
  *p++ = type >> 8;
  *p++ = type & 0xff;
  *p++ = 0;
  *p++ = 1; /* class IN */
  q->length = p - q->packet;
  return 1;
}

static struct dns_query dns_list[32]; /* --queries, asked in turn */
static int dns_count;
static uint16_t *dns_ids; /* per socket: the ID of its query in flight */
static int *dns_turn;     /* per socket: which of the queries it asks */

/* Sends socket i's query with a fresh ID, stamped `t` (an answer to the
 * query before, late, then has the old ID and does not count). */
static void dns_send(int i, double t) {
  struct dns_query *q = &dns_list[dns_turn[i]];
  dns_ids[i]++;
  q->packet[0] = dns_ids[i] >> 8;
  q->packet[1] = dns_ids[i] & 0xff;
  send(dgram_fds[i], q->packet, q->length, 0);
  dgram_sent[i] = t;
}

static int run_dns(void) {
  char *specs = strdup(queries), *save = NULL;
  for (char *spec = strtok_r(specs, ",", &save); spec && dns_count < 32;
       spec = strtok_r(NULL, ",", &save)) {
    if (!dns_build(spec, &dns_list[dns_count++])) {
      fprintf(stderr, "loadgen: bad --queries entry '%s'\n", spec);
      return 2;
    }
  }
  if (dns_count == 0) return 2;
  unsigned char buffer[65536];
  dns_ids = calloc(conns, sizeof *dns_ids);
  dns_turn = calloc(conns, sizeof *dns_turn);
  int epoll = epoll_create1(0);
  dgram_open(epoll);
  for (int i = 0; i < conns; i++) {
    dns_turn[i] = i % dns_count;
    dns_ids[i] = (uint16_t)(i * 997);
  }
  begin();
  for (int i = 0; i < conns; i++) dns_send(i, now());
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    double t = now();
    for (int e = 0; e < n; e++) {
      int i = events[e].data.u32;
      ssize_t got;
      while ((got = recv(dgram_fds[i], buffer, sizeof buffer, 0)) >= 0) {
        /* Ours? (a late answer to a resent query is not) */
        if (got < 12 || ((buffer[0] << 8) | buffer[1]) != dns_ids[i]) continue;
        int answers = (buffer[6] << 8) | buffer[7];
        /* QR set, RCODE 0 (NOERROR), at least one answer. */
        if ((buffer[2] & 0x80) && (buffer[3] & 0x0f) == 0 && answers > 0)
          ops++;
        else
          errors++;
        bytes += got;
        record_latency(t - dgram_sent[i]);
        dns_turn[i] = (dns_turn[i] + 1) % dns_count;
        dns_send(i, now());
      }
    }
    dgram_resend_lost(t, dns_send);
  }
  report();
  return 0;
}

/* ---- upload: header (unless --raw), the file by sendfile, the reply ---- */
static int run_upload(void) {
  int in = open(file, O_RDONLY);
  if (in < 0) die(file);
  struct stat st;
  fstat(in, &st);
  double cpu0 = cpu_seconds();
  t_measure = now();
  int fd = tcp_connect();
  if (!raw) {
    char header[1024];
    int len = snprintf(header, sizeof header, "UPLOAD %lld %s\n",
                       (long long)st.st_size, name);
    if (write(fd, header, len) != len) die("write");
  }
  off_t offset = 0;
  while (offset < st.st_size) {
    ssize_t n = sendfile(fd, in, &offset, st.st_size - offset);
    if (n < 0) die("sendfile");
  }
  /* A raw receiver only finishes when it sees the end of the stream; our
   * server answers once it has <size> bytes, so there we wait for its line
   * instead. Either way, the reply (or the close) ends the clock. */
  if (raw) shutdown(fd, SHUT_WR);
  char reply[1024];
  int got = 0;
  ssize_t n;
  while (got < (int)sizeof reply - 1 &&
         (n = read(fd, reply + got, sizeof reply - 1 - got)) > 0) {
    got += n;
    if (memchr(reply, '\n', got)) break;
  }
  double seconds = now() - t_measure;
  reply[got] = '\0';
  char *newline = strchr(reply, '\n');
  if (newline) *newline = '\0';
  close(fd);
  printf("{\"ops\":1,\"bytes\":%lld,\"seconds\":%.4f,\"cpu\":%.4f,"
         "\"p50_us\":0,\"p99_us\":0,\"errors\":0,\"reply\":\"",
         (long long)st.st_size, seconds, cpu_seconds() - cpu0);
  for (char *p = reply; *p; p++)
    if (*p >= 0x20 && *p != '"' && *p != '\\') putchar(*p);
  printf("\"}\n");
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    fprintf(stderr, "usage: loadgen rr|stream|udp|chat|burst|paced|rpc|dns|"
                    "upload --port P ...\n");
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    const char *option = argv[i];
    if (strcmp(option, "--raw") == 0) {
      raw = 1;
      continue;
    }
    if (strcmp(option, "--tls") == 0) {
      tls = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "loadgen: %s needs a value\n", option);
      return 2;
    }
    const char *value = argv[++i];
    if (strcmp(option, "--host") == 0) host = value;
    else if (strcmp(option, "--port") == 0) port = atoi(value);
    else if (strcmp(option, "--port2") == 0) port2 = atoi(value);
    else if (strcmp(option, "--conns") == 0) conns = atoi(value);
    else if (strcmp(option, "--size") == 0) size = atoi(value);
    else if (strcmp(option, "--depth") == 0) depth = atoi(value);
    else if (strcmp(option, "--warmup") == 0) warmup = atof(value);
    else if (strcmp(option, "--duration") == 0) duration = atof(value);
    else if (strcmp(option, "--file") == 0) file = value;
    else if (strcmp(option, "--name") == 0) name = value;
    else if (strcmp(option, "--cacert") == 0) cacert = value, tls = 1;
    else if (strcmp(option, "--servername") == 0) servername = value;
    else if (strcmp(option, "--ws") == 0) ws_path = value;
    else if (strcmp(option, "--lines") == 0) lines = atol(value);
    else if (strcmp(option, "--rate") == 0) rate = atof(value);
    else if (strcmp(option, "--timeout") == 0) timeout = atof(value);
    else if (strcmp(option, "--queries") == 0) queries = value;
    else if (strcmp(option, "--pids") == 0) pids = value;
    else {
      fprintf(stderr, "loadgen: unknown option %s\n", option);
      return 2;
    }
  }
  if (conns < 1 || size < 1 || depth < 1 || port < 1 || lines < 1 ||
      rate <= 0 || timeout <= 0) {
    fprintf(stderr, "loadgen: --port, --conns, --size, --depth, --lines, "
                    "--rate, --timeout must be > 0\n");
    return 2;
  }
  histogram = calloc(BUCKETS, sizeof *histogram);
  const char *mode = argv[1];
  int room = strcmp(mode, "chat") == 0 || strcmp(mode, "burst") == 0 ||
             strcmp(mode, "paced") == 0;
  if (room && conns < 2) {
    fprintf(stderr, "loadgen: %s needs --conns 2 or more\n", mode);
    return 2;
  }
  if (strcmp(mode, "rr") == 0) return run_rr();
  if (strcmp(mode, "stream") == 0) return run_stream();
  if (strcmp(mode, "udp") == 0) return run_udp();
  if (strcmp(mode, "chat") == 0) return chat_kind = CHAT_LOOP, run_chat();
  if (strcmp(mode, "burst") == 0) return chat_kind = CHAT_BURST, run_burst();
  if (strcmp(mode, "paced") == 0) return chat_kind = CHAT_PACED, run_paced();
  if (strcmp(mode, "rpc") == 0) return run_rpc();
  if (strcmp(mode, "dns") == 0) return run_dns();
  if (strcmp(mode, "upload") == 0 && file) return run_upload();
  fprintf(stderr, "loadgen: unknown mode %s (or upload without --file)\n",
          mode);
  return 2;
}
