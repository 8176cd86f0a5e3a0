/*
 * Load generator for `deno task bench`: one thread, epoll, non-blocking
 * sockets, so that on its own CPU it drives a server harder than the server
 * can answer. bench.ts compiles it with `cc -O2` at bench time and falls back
 * to bench/load.ts (same options, same output) when there is no compiler.
 *
 *   loadgen rr     --port P [--conns N] [--size B] [--depth D]   TCP round trips
 *   loadgen stream --port P [--conns N] [--size B]               TCP echo MB/s
 *   loadgen udp    --port P [--conns N] [--size B]               UDP round trips
 *   loadgen chat   --port P [--conns N] [--size B] [--depth D]   chat fan-out
 *   loadgen upload --port P --file F [--name NAME] [--raw]       one upload
 *
 * Common: --host H (IPv4, default 127.0.0.1), --warmup S, --duration S.
 * Closed loop everywhere: each connection keeps --depth messages in flight
 * and sends the next one only when one comes back, so the figure measures
 * the server, not how much we can queue in kernel buffers.
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
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 0;
static int conns = 1;
static int size = 64;
static int depth = 1;
static double warmup = 0.5;
static double duration = 2.0;
static const char *file = NULL;
static const char *name = "bench.bin";
static int raw = 0; /* upload without the UPLOAD header (the nc baseline) */

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

static struct sockaddr_in server_address(void) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
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
static int tcp_connect(void) {
  struct sockaddr_in a = server_address();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  return fd;
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

/* ---- the measured window ---- */
static double t_start, t_measure, t_end, cpu_start;
static uint64_t ops, bytes, errors;
static int measuring = 0;

static void begin(void) {
  t_start = now();
  t_measure = t_start + warmup;
  t_end = t_measure + duration;
}

/* Called between events: starts the window after warm-up; false when done. */
static int tick(void) {
  double t = now();
  if (!measuring && t >= t_measure) {
    measuring = 1;
    ops = bytes = errors = 0;
    samples = 0;
    memset(histogram, 0, BUCKETS * sizeof *histogram);
    cpu_start = cpu_seconds();
    t_measure = t;
    /* Tells bench.ts to start its own clock (server CPU) now. */
    printf("measuring\n");
    fflush(stdout);
  }
  return t < t_end;
}

static void report(void) {
  double seconds = now() - t_measure;
  printf("{\"ops\":%llu,\"bytes\":%llu,\"seconds\":%.4f,\"cpu\":%.4f,"
         "\"p50_us\":%.0f,\"p99_us\":%.0f,\"errors\":%llu}\n",
         (unsigned long long)ops, (unsigned long long)bytes, seconds,
         cpu_seconds() - cpu_start, percentile_us(0.50), percentile_us(0.99),
         (unsigned long long)errors);
  fflush(stdout);
}

/* ---- rr: TCP round trips of --size bytes, --depth in flight per conn ---- */
struct rr_conn {
  int fd;
  int received; /* bytes of the current reply received so far */
  int unsent;   /* bytes owed to the socket (only when it was full) */
  int waiting;  /* registered for EPOLLOUT */
};

static char filler[65536]; /* what rr writes: only the length matters */

/* Writes what is owed; when the socket is full, waits for EPOLLOUT. */
static void rr_flush(struct rr_conn *c, int epoll) {
  while (c->unsent > 0) {
    int chunk = c->unsent < (int)sizeof filler ? c->unsent : (int)sizeof filler;
    ssize_t n = write(c->fd, filler, chunk);
    if (n < 0) {
      if (errno != EAGAIN) die("write");
      break;
    }
    c->unsent -= n;
  }
  if (c->waiting != (c->unsent > 0)) { /* a syscall only on change */
    c->waiting = c->unsent > 0;
    struct epoll_event ev = {
        .events = EPOLLIN | (c->waiting ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epoll, EPOLL_CTL_MOD, c->fd, &ev);
  }
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
    all[i].fd = tcp_connect();
    set_nonblocking(all[i].fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &all[i]};
    epoll_ctl(epoll, EPOLL_CTL_ADD, all[i].fd, &ev);
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
      ssize_t got = read(c->fd, buffer, sizeof buffer);
      if (got == 0 || (got < 0 && errno != EAGAIN)) {
        fprintf(stderr, "loadgen: server closed a connection\n");
        exit(1);
      }
      if (got < 0) continue;
      bytes += got;
      c->received += got;
      while (c->received >= size) {
        c->received -= size;
        ops++;
        rr_send(c, epoll);
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
  int epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    int fd = tcp_connect();
    set_nonblocking(fd);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev);
  }
  begin();
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      int fd = events[e].data.fd;
      if (events[e].events & EPOLLOUT) {
        ssize_t put = write(fd, out, size);
        if (put < 0 && errno != EAGAIN) die("write");
      }
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t got = read(fd, in, 1 << 20);
        if (got == 0 || (got < 0 && errno != EAGAIN)) {
          fprintf(stderr, "loadgen: server closed a connection\n");
          exit(1);
        }
        if (got > 0) {
          bytes += got;
          ops++;
        }
      }
    }
  }
  report();
  return 0;
}

/* ---- udp: one datagram in flight per socket, resent if lost ---- */
static int run_udp(void) {
  struct sockaddr_in a = server_address();
  char *message = malloc(size);
  memset(message, 'x', size);
  char buffer[65536];
  int *fds = calloc(conns, sizeof *fds);
  double *sent_at = calloc(conns, sizeof *sent_at);
  int epoll = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    if (fds[i] < 0) die("socket");
    if (connect(fds[i], (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    set_nonblocking(fds[i]);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(epoll, EPOLL_CTL_ADD, fds[i], &ev);
  }
  begin();
  for (int i = 0; i < conns; i++) {
    send(fds[i], message, size, 0);
    sent_at[i] = now();
  }
  struct epoll_event events[256];
  while (tick()) {
    int n = epoll_wait(epoll, events, 256, 10);
    double t = now();
    for (int e = 0; e < n; e++) {
      int i = events[e].data.u32;
      ssize_t got;
      while ((got = recv(fds[i], buffer, sizeof buffer, 0)) >= 0) {
        ops++;
        bytes += got;
        record_latency(t - sent_at[i]);
        send(fds[i], message, size, 0);
        sent_at[i] = t;
      }
    }
    /* A datagram may be dropped under load: resend after 200 ms. */
    for (int i = 0; i < conns; i++) {
      if (t - sent_at[i] > 0.2) {
        errors++;
        send(fds[i], message, size, 0);
        sent_at[i] = t;
      }
    }
  }
  report();
  return 0;
}

/*
 * ---- chat: --conns clients; each keeps --depth lines in flight ----
 * A line is "m ~SENDER SEQ NANOS xxx…\n"; whatever the server puts before
 * it ("guest7: ", "<user7> ") is skipped by looking for '~'. A line counts as
 * delivered at each other client; once all of them have it, its sender may
 * send another. Lines without '~' (welcome, joined, left) are ignored.
 */
struct chat_conn {
  int fd;
  uint32_t sequence;
  char in[65536];
  int in_len;
  char out[8192];
  int out_len;
  int welcomed;
};
static struct chat_conn *clients;
static uint16_t *pending_deliveries; /* [sender * depth + seq % depth] */
static int chat_epoll;

static void chat_flush(struct chat_conn *c) {
  while (c->out_len > 0) {
    ssize_t n = write(c->fd, c->out, c->out_len);
    if (n < 0) {
      if (errno != EAGAIN) die("write");
      break;
    }
    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;
  }
  struct epoll_event ev = {
      .events = EPOLLIN | (c->out_len > 0 ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(chat_epoll, EPOLL_CTL_MOD, c->fd, &ev);
}

static void chat_send(struct chat_conn *c) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  unsigned long long nanos = t.tv_sec * 1000000000ULL + t.tv_nsec;
  char line[512];
  int len = snprintf(line, sizeof line, "m ~%d %u %llu ", (int)(c - clients),
                     c->sequence++, nanos);
  while (len < size - 1 && len < (int)sizeof line - 2) line[len++] = 'x';
  line[len++] = '\n';
  if (c->out_len + len > (int)sizeof c->out) {
    fprintf(stderr, "loadgen: chat output queue overflow\n");
    exit(1);
  }
  memcpy(c->out + c->out_len, line, len);
  c->out_len += len;
  chat_flush(c);
}

static void chat_line(char *line, char *end) {
  char *mark = memchr(line, '~', end - line);
  if (!mark) return;
  *end = '\0';
  char *rest;
  long sender = strtol(mark + 1, &rest, 10);
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
  uint16_t *slot = &pending_deliveries[sender * depth + sequence % depth];
  if (++*slot == conns - 1) {
    *slot = 0;
    chat_send(&clients[sender]);
  }
}

static void chat_read(struct chat_conn *c) {
  while (1) {
    ssize_t got = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (got == 0 || (got < 0 && errno != EAGAIN)) {
      fprintf(stderr, "loadgen: the chat server closed client %d\n",
              (int)(c - clients));
      exit(1);
    }
    if (got < 0) return;
    bytes += got;
    c->in_len += got;
    char *start = c->in, *end = c->in + c->in_len, *newline;
    while ((newline = memchr(start, '\n', end - start))) {
      c->welcomed = 1;
      chat_line(start, newline);
      start = newline + 1;
    }
    c->in_len = end - start;
    memmove(c->in, start, c->in_len);
    if (c->in_len == sizeof c->in) c->in_len = 0; /* absurd line: drop */
  }
}

static int run_chat(void) {
  if (conns < 2) {
    fprintf(stderr, "loadgen: chat needs --conns 2 or more\n");
    return 2;
  }
  clients = calloc(conns, sizeof *clients);
  pending_deliveries = calloc((size_t)conns * depth, sizeof *pending_deliveries);
  chat_epoll = epoll_create1(0);
  /* Join one client at a time and wait (at most 1 s) for its first line: a
   * welcome, or ncat's "<announce> already connected". Connecting all at
   * once overflows a small listen backlog (ncat's), and the dropped SYNs
   * then cost a 1 s retransmit each. */
  struct epoll_event events[256];
  for (int i = 0; i < conns; i++) {
    clients[i].fd = tcp_connect();
    set_nonblocking(clients[i].fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &clients[i]};
    epoll_ctl(chat_epoll, EPOLL_CTL_ADD, clients[i].fd, &ev);
    double deadline = now() + 1.0;
    while (!clients[i].welcomed && now() < deadline) {
      int n = epoll_wait(chat_epoll, events, 256, 10);
      for (int e = 0; e < n; e++) chat_read(events[e].data.ptr);
    }
  }
  begin();
  for (int i = 0; i < conns; i++)
    for (int d = 0; d < depth; d++) chat_send(&clients[i]);
  while (tick()) {
    int n = epoll_wait(chat_epoll, events, 256, 10);
    for (int e = 0; e < n; e++) {
      struct chat_conn *c = events[e].data.ptr;
      if (events[e].events & EPOLLOUT) chat_flush(c);
      if (events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) chat_read(c);
    }
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
  /* nc only finishes when it sees the end of the stream; our server answers
   * once it has <size> bytes, so there we wait for its line instead. */
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
    fprintf(stderr, "usage: loadgen rr|stream|udp|chat|upload --port P ...\n");
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    const char *option = argv[i];
    if (strcmp(option, "--raw") == 0) {
      raw = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "loadgen: %s needs a value\n", option);
      return 2;
    }
    const char *value = argv[++i];
    if (strcmp(option, "--host") == 0) host = value;
    else if (strcmp(option, "--port") == 0) port = atoi(value);
    else if (strcmp(option, "--conns") == 0) conns = atoi(value);
    else if (strcmp(option, "--size") == 0) size = atoi(value);
    else if (strcmp(option, "--depth") == 0) depth = atoi(value);
    else if (strcmp(option, "--warmup") == 0) warmup = atof(value);
    else if (strcmp(option, "--duration") == 0) duration = atof(value);
    else if (strcmp(option, "--file") == 0) file = value;
    else if (strcmp(option, "--name") == 0) name = value;
    else {
      fprintf(stderr, "loadgen: unknown option %s\n", option);
      return 2;
    }
  }
  if (conns < 1 || size < 1 || depth < 1 || port < 1) {
    fprintf(stderr, "loadgen: --port, --conns, --size, --depth must be > 0\n");
    return 2;
  }
  histogram = calloc(BUCKETS, sizeof *histogram);
  const char *mode = argv[1];
  if (strcmp(mode, "rr") == 0) return run_rr();
  if (strcmp(mode, "stream") == 0) return run_stream();
  if (strcmp(mode, "udp") == 0) return run_udp();
  if (strcmp(mode, "chat") == 0) return run_chat();
  if (strcmp(mode, "upload") == 0 && file) return run_upload();
  fprintf(stderr, "loadgen: unknown mode %s (or upload without --file)\n",
          mode);
  return 2;
}
