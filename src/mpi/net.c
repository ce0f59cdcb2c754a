/* net.c - TCP streams between the MPI ranks (net.h): framing, bounded reads, and the
 * collective set-up that connects every pair of ranks. */
#include "mpi/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mpi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bytes.h"
#include "tempo/common.h"

#define FRAME_MAGIC 0x46504D54u /* "TMPF" little-endian */
#define FRAME_VERSION 1u
#define ADDR_LEN 64
#define HOST_LEN 256
#define MESH_TIMEOUT_S 30.0


void tempo_net_frame_write(uint8_t out[TEMPO_NET_FRAME_SIZE], tempo_net_kind kind, uint64_t len) {
  tempo_le_put32(out, FRAME_MAGIC);
  tempo_le_put16(out + 4, FRAME_VERSION);
  tempo_le_put16(out + 6, (uint16_t)kind);
  tempo_le_put64(out + 8, len);
}

tempo_status tempo_net_send(int fd, tempo_net_kind kind, int n, const void *const *part, const size_t *len) {
  enum { MAXP = 16 };
  if (n < 0 || n > MAXP - 1) return tempo_set_error(TEMPO_STATUS_INTERNAL, "net: %d parts in one frame", n);
  uint8_t fh[TEMPO_NET_FRAME_SIZE];
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += len[i];
  tempo_net_frame_write(fh, kind, total);
  struct iovec iov[MAXP];
  int niov = 0;
  iov[niov++] = (struct iovec){fh, sizeof fh};
  for (int i = 0; i < n; i++)
    if (len[i]) iov[niov++] = (struct iovec){(void *)part[i], len[i]};
  int first = 0;
  while (first < niov) {
    struct msghdr mh = {.msg_iov = iov + first, .msg_iovlen = (size_t)(niov - first)};
    ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return tempo_set_error(TEMPO_STATUS_WORKER, "net: peer gone (%s)", strerror(errno));
    }
    size_t left = (size_t)w;
    while (first < niov && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < niov) iov[first].iov_base = (uint8_t *)iov[first].iov_base + left, iov[first].iov_len -= left;
  }
  return TEMPO_STATUS_OK;
}

tempo_net_result tempo_net_read(int fd, void *buf, size_t len, double deadline, bool (*cancel)(void)) {
  uint8_t *p = buf;
  size_t got = 0;
  while (got < len) {
    tempo_net_result w = tempo_net_wait(fd, deadline, cancel);
    if (w != TEMPO_NET_OK) return w;
    ssize_t n = recv(fd, p + got, len - got, 0);
    if (n == 0) return TEMPO_NET_CLOSED;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return TEMPO_NET_CLOSED;
    }
    got += (size_t)n;
  }
  return TEMPO_NET_OK;
}

tempo_net_result tempo_net_wait(int fd, double deadline, bool (*cancel)(void)) {
  for (;;) {
    int wait_ms = 100;
    if (deadline > 0) {
      double left = deadline - tempo_now();
      if (left <= 0) return TEMPO_NET_TIMEOUT;
      if (left < 0.1) wait_ms = (int)(left * 1000) + 1;
    }
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int r = poll(&pf, 1, wait_ms);
    if (r < 0 && errno != EINTR) return TEMPO_NET_CLOSED;
    if (r > 0) return TEMPO_NET_OK; /* bytes, or an end that the next read sees */
    if (cancel && cancel()) return TEMPO_NET_TIMEOUT;
  }
}

tempo_net_result tempo_net_skip(int fd, uint64_t len, double deadline, bool (*cancel)(void)) {
  uint8_t scratch[1 << 14];
  for (uint64_t left = len; left > 0;) {
    const size_t n = left < sizeof scratch ? (size_t)left : sizeof scratch;
    tempo_net_result r = tempo_net_read(fd, scratch, n, deadline, cancel);
    if (r) return r;
    left -= n;
  }
  return TEMPO_NET_OK;
}

tempo_net_result tempo_net_frame_read_any(int fd, uint64_t max_len, double deadline, bool (*cancel)(void),
                                          tempo_net_kind *kind, uint64_t *len) {
  uint8_t fh[TEMPO_NET_FRAME_SIZE];
  tempo_net_result r = tempo_net_read(fd, fh, sizeof fh, deadline, cancel);
  if (r) return r;
  if (tempo_le_get32(fh) != FRAME_MAGIC || tempo_le_get16(fh + 4) != FRAME_VERSION) return TEMPO_NET_BAD;
  *kind = (tempo_net_kind)tempo_le_get16(fh + 6);
  *len = tempo_le_get64(fh + 8);
  return *len <= max_len ? TEMPO_NET_OK : TEMPO_NET_BAD;
}

tempo_net_result tempo_net_frame_read(int fd, tempo_net_kind want, uint64_t max_len, double deadline,
                                      bool (*cancel)(void), uint64_t *len) {
  tempo_net_kind kind;
  tempo_net_result r = tempo_net_frame_read_any(fd, max_len, deadline, cancel, &kind, len);
  return r ? r : kind == want ? TEMPO_NET_OK : TEMPO_NET_BAD;
}

void tempo_net_close_all(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0) {
      shutdown(fds[i], SHUT_RDWR);
      close(fds[i]);
      fds[i] = -1;
    }
}

/* ---- set-up ---- */

/* A buffer for an all-gather: without it this rank cannot take part in a collective the
 * others are already in, so running out of memory here ends the job. */
static char *gather_buffer(int world, size_t each) {
  char *b = calloc((size_t)world, each);
  if (!b) {
    fprintf(stderr, "tempo: out of memory while connecting the ranks\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return b;
}

/* The address this rank advertises (see net.h). */
static tempo_status pick_ip(char ip[ADDR_LEN], int world) {
  char host[HOST_LEN] = {0};
  gethostname(host, sizeof host - 1);
  char *all = gather_buffer(world, HOST_LEN);
  /* collective on every rank, whatever this rank decides below */
  MPI_Allgather(host, HOST_LEN, MPI_CHAR, all, HOST_LEN, MPI_CHAR, MPI_COMM_WORLD);
  bool one_host = true;
  for (int r = 0; r < world; r++) one_host = one_host && !strncmp(all + (size_t)r * HOST_LEN, host, HOST_LEN);
  free(all);
  const char *env = getenv("TEMPO_NET_ADDR");
  if (env && *env) {
    struct in_addr a;
    if (inet_pton(AF_INET, env, &a) != 1)
      return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "TEMPO_NET_ADDR '%s' is not an IPv4 address", env);
    snprintf(ip, ADDR_LEN, "%s", env);
    return TEMPO_STATUS_OK;
  }
  if (one_host) {
    snprintf(ip, ADDR_LEN, "127.0.0.1");
    return TEMPO_STATUS_OK;
  }
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
  if (getaddrinfo(host, NULL, &hints, &res) == 0) {
    for (struct addrinfo *a = res; a; a = a->ai_next) {
      const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
      if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127) continue;
      inet_ntop(AF_INET, &sin->sin_addr, ip, ADDR_LEN);
      freeaddrinfo(res);
      return TEMPO_STATUS_OK;
    }
    freeaddrinfo(res);
  }
  return tempo_set_error(TEMPO_STATUS_WORKER,
                         "net: host '%s' has no non-loopback IPv4 address; set TEMPO_NET_ADDR to this host's address",
                         host);
}

static void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static tempo_status listen_on(const char *ip, int *lfd, char addr[ADDR_LEN]) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "net: socket: %s", strerror(errno));
  struct sockaddr_in sa = {.sin_family = AF_INET};
  inet_pton(AF_INET, ip, &sa.sin_addr);
  socklen_t sl = sizeof sa;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 256) || getsockname(fd, (struct sockaddr *)&sa, &sl)) {
    int e = errno;
    close(fd);
    return tempo_set_error(TEMPO_STATUS_WORKER, "net: cannot listen on %s: %s", ip, strerror(e));
  }
  snprintf(addr, ADDR_LEN, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
  *lfd = fd;
  return TEMPO_STATUS_OK;
}

static tempo_status connect_to(const char *addr, int *out) {
  char ip[ADDR_LEN];
  unsigned port = 0;
  const char *colon = strrchr(addr, ':');
  struct sockaddr_in sa = {.sin_family = AF_INET};
  if (!colon || colon - addr >= ADDR_LEN || sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "net: bad peer address '%.64s'", addr);
  memcpy(ip, addr, (size_t)(colon - addr));
  ip[colon - addr] = '\0';
  if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "net: bad peer address '%.64s'", addr);
  sa.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return tempo_set_error(TEMPO_STATUS_WORKER, "net: socket: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
    int e = errno;
    close(fd);
    return tempo_set_error(TEMPO_STATUS_WORKER, "net: cannot connect to %s: %s", addr, strerror(e));
  }
  tune(fd);
  *out = fd;
  return TEMPO_STATUS_OK;
}

/* Accepts connections until every lower rank has said HELLO with the right token. */
static tempo_status accept_lower(int lfd, int self, const uint8_t *token, int *fds) {
  int missing = self;
  const double deadline = tempo_now() + MESH_TIMEOUT_S;
  while (missing > 0) {
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    double left = deadline - tempo_now();
    if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) <= 0) break;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    uint8_t hello[4 + TEMPO_NET_TOKEN_SIZE];
    uint64_t len = 0;
    int peer = -1;
    /* a silent stranger gets 2 s, so it cannot hold up the ranks behind it */
    const double hello_by = tempo_now() + 2.0 < deadline ? tempo_now() + 2.0 : deadline;
    if (tempo_net_frame_read(fd, TEMPO_NET_HELLO, sizeof hello, hello_by, NULL, &len) == TEMPO_NET_OK &&
        len == sizeof hello && tempo_net_read(fd, hello, sizeof hello, hello_by, NULL) == TEMPO_NET_OK &&
        sodium_memcmp(hello + 4, token, TEMPO_NET_TOKEN_SIZE) == 0)
      peer = (int)tempo_le_get32(hello);
    if (peer < 0 || peer >= self || fds[peer] >= 0) { /* a stranger, a wrong token or a duplicate */
      close(fd);
      continue;
    }
    tune(fd);
    fds[peer] = fd;
    missing--;
  }
  return missing ? tempo_set_error(TEMPO_STATUS_WORKER, "net: rank %d: %d lower ranks never connected", self, missing)
                 : TEMPO_STATUS_OK;
}

tempo_status tempo_net_mesh(int *fds, int world) {
  int self = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &self);
  for (int r = 0; r < world; r++) fds[r] = -1;
  uint8_t token[TEMPO_NET_TOKEN_SIZE];
  if (self == 0) randombytes_buf(token, sizeof token);
  MPI_Bcast(token, (int)sizeof token, MPI_BYTE, 0, MPI_COMM_WORLD);
  char ip[ADDR_LEN] = {0}, addr[ADDR_LEN] = {0};
  int lfd = -1;
  tempo_status st = pick_ip(ip, world);
  if (!st) st = listen_on(ip, &lfd, addr);
  char *all = gather_buffer(world, ADDR_LEN);
  MPI_Allgather(addr, ADDR_LEN, MPI_CHAR, all, ADDR_LEN, MPI_CHAR, MPI_COMM_WORLD);
  /* connect upwards (the listeners' backlogs take them before anyone accepts), then accept */
  for (int r = self + 1; r < world && !st; r++) {
    char *peer = all + (size_t)r * ADDR_LEN;
    peer[ADDR_LEN - 1] = '\0';
    uint8_t hello[4 + TEMPO_NET_TOKEN_SIZE];
    tempo_le_put32(hello, (uint32_t)self);
    memcpy(hello + 4, token, sizeof token);
    const void *part[1] = {hello};
    size_t len[1] = {sizeof hello};
    if (!(st = connect_to(peer, &fds[r]))) st = tempo_net_send(fds[r], TEMPO_NET_HELLO, 1, part, len);
  }
  if (!st && lfd >= 0) st = accept_lower(lfd, self, token, fds);
  if (lfd >= 0) close(lfd);
  free(all);
  sodium_memzero(token, sizeof token);
  int ok = st == TEMPO_STATUS_OK, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_ok) {
    tempo_net_close_all(fds, world);
    return st ? st : tempo_set_error(TEMPO_STATUS_WORKER, "net: another rank could not connect (see its error)");
  }
  return TEMPO_STATUS_OK;
}

/* ---- relay keys ---- */

static tempo_status read_key(int fd, uint8_t pk[crypto_kx_PUBLICKEYBYTES], double deadline) {
  uint64_t len = 0;
  if (tempo_net_frame_read(fd, TEMPO_NET_KEY, crypto_kx_PUBLICKEYBYTES, deadline, NULL, &len) != TEMPO_NET_OK ||
      len != crypto_kx_PUBLICKEYBYTES || tempo_net_read(fd, pk, len, deadline, NULL) != TEMPO_NET_OK)
    return tempo_set_error(TEMPO_STATUS_WORKER, "net: the relay key exchange failed (no or a malformed key)");
  return TEMPO_STATUS_OK;
}

static tempo_status send_key(int fd, const uint8_t pk[crypto_kx_PUBLICKEYBYTES]) {
  const void *part[1] = {pk};
  size_t len[1] = {crypto_kx_PUBLICKEYBYTES};
  return tempo_net_send(fd, TEMPO_NET_KEY, 1, part, len);
}

tempo_status tempo_net_keys_master(const int *fds, int world, uint8_t *keys) {
  uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES], peer[crypto_kx_PUBLICKEYBYTES];
  uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
  crypto_kx_keypair(pk, sk);
  tempo_status st = TEMPO_STATUS_OK;
  for (int r = 1; r < world && !st; r++) st = send_key(fds[r], pk);
  const double deadline = tempo_now() + MESH_TIMEOUT_S;
  for (int r = 1; r < world && !st; r++) {
    if ((st = read_key(fds[r], peer, deadline))) break;
    if (crypto_kx_server_session_keys(rx, tx, pk, sk, peer))
      st = tempo_set_error(TEMPO_STATUS_WORKER, "net: worker %d sent an unusable relay key", r);
    else
      memcpy(keys + (size_t)(r - 1) * 32, rx, 32); /* the worker's tx */
  }
  sodium_memzero(sk, sizeof sk);
  sodium_memzero(rx, sizeof rx);
  sodium_memzero(tx, sizeof tx);
  if (st) sodium_memzero(keys, (size_t)(world - 1) * 32);
  return st;
}

tempo_status tempo_net_keys_worker(int fd, uint8_t key[32]) {
  uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES], master[crypto_kx_PUBLICKEYBYTES];
  uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
  crypto_kx_keypair(pk, sk);
  tempo_status st = read_key(fd, master, tempo_now() + MESH_TIMEOUT_S);
  if (!st) st = send_key(fd, pk);
  if (!st && crypto_kx_client_session_keys(rx, tx, pk, sk, master))
    st = tempo_set_error(TEMPO_STATUS_WORKER, "net: the master sent an unusable relay key");
  if (!st) memcpy(key, tx, 32);
  sodium_memzero(sk, sizeof sk);
  sodium_memzero(rx, sizeof rx);
  sodium_memzero(tx, sizeof tx);
  return st;
}
