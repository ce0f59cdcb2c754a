/* net.h - the TCP streams that carry Tempo's data between the MPI ranks (internal).
 *
 * Open MPI 4.1 (no ULFM) cannot survive the death of a rank: the job is aborted, or MPI calls
 * that touch the dead peer retry its connection and stall. So MPI only launches the processes,
 * places them and exchanges addresses (tempo_net_mesh); every byte of a request, reply or
 * relay then travels over plain TCP streams between the same processes, where a dead peer is
 * an EOF or a reset on one socket and nothing else. docs/distributed.md has the details.
 *
 * A frame is a 16-byte header (little-endian: 0 magic "TMPF", 4 version u16, 6 kind u16,
 * 8 length u64) and `length` bytes. Every received header is untrusted and checked
 * (tempo_net_frame_read) before anything is allocated from it. Sockets are blocking; reads
 * that must not wait forever go through poll() with a deadline. Writes use MSG_NOSIGNAL, so a
 * closed peer gives an error, not SIGPIPE. */
#ifndef TEMPO_MPI_NET_H
#define TEMPO_MPI_NET_H

#include <stddef.h>
#include <stdint.h>

#include "tempo/status.h"

#define TEMPO_NET_FRAME_SIZE 16u
#define TEMPO_NET_TOKEN_SIZE 32u

typedef enum {
  TEMPO_NET_HELLO = 1, /* connector -> acceptor: rank u32 + session token */
  TEMPO_NET_REQ = 2,   /* master -> worker: envelope + inline message bytes */
  TEMPO_NET_REPLY = 3, /* worker -> master: a protocol message */
  TEMPO_NET_RELAY = 4, /* worker -> worker: a relayed operand range */
  TEMPO_NET_REDUCE = 5, /* worker -> worker: a partial dW' sum (empty: the chain broke) */
  TEMPO_NET_KEY = 6,    /* master <-> worker, once after the mesh: a 32-byte X25519 public key */
} tempo_net_kind;

/* How a bounded read ended. */
typedef enum { TEMPO_NET_OK = 0, TEMPO_NET_TIMEOUT, TEMPO_NET_CLOSED, TEMPO_NET_BAD } tempo_net_result;

void tempo_net_frame_write(uint8_t out[TEMPO_NET_FRAME_SIZE], tempo_net_kind kind, uint64_t len);

/* Writes a frame header and the n parts (one sendmsg loop, partial writes resumed).
 * TEMPO_STATUS_WORKER when the peer is gone. */
TEMPO_WUR tempo_status tempo_net_send(int fd, tempo_net_kind kind, int n, const void *const *part, const size_t *len);

/* Reads exactly len bytes before `deadline` (tempo_now() seconds; <= 0: no deadline).
 * cancel (may be NULL) is polled every 100 ms: when it returns true the read gives up as
 * TIMEOUT (a worker whose launcher died). */
tempo_net_result tempo_net_read(int fd, void *buf, size_t len, double deadline, bool (*cancel)(void));

/* Waits until fd has bytes to read (OK), the deadline passes or cancel says so (TIMEOUT),
 * or the stream ends (CLOSED); reads nothing. */
tempo_net_result tempo_net_wait(int fd, double deadline, bool (*cancel)(void));

/* Reads and drops len bytes (a frame nobody waits for any more) before the deadline. */
tempo_net_result tempo_net_skip(int fd, uint64_t len, double deadline, bool (*cancel)(void));

/* Reads and checks a frame header of any kind: magic, version, length <= max_len. */
tempo_net_result tempo_net_frame_read_any(int fd, uint64_t max_len, double deadline, bool (*cancel)(void),
                                          tempo_net_kind *kind, uint64_t *len);

/* Reads and checks a frame header: magic, version, kind == want, length <= max_len. */
tempo_net_result tempo_net_frame_read(int fd, tempo_net_kind want, uint64_t max_len, double deadline,
                                      bool (*cancel)(void), uint64_t *len);

/* Connects every pair of ranks of MPI_COMM_WORLD with a TCP stream, collectively (every rank
 * must call it after MPI_Init). fds[r] is the stream to rank r (fds[self] = -1). The
 * address each rank
 * listens on: $TEMPO_NET_ADDR if set, 127.0.0.1 when every rank runs on one host, else the
 * first non-loopback IPv4 address of the host name. Connections are authenticated with a
 * random session token rank 0 broadcasts. On failure on any rank every rank gets an error
 * and no stream. */
TEMPO_WUR tempo_status tempo_net_mesh(int *fds, int world);

/* The per-worker relay keys (envelope.h), made right after tempo_net_mesh by an X25519
 * exchange (libsodium crypto_kx) on the master's stream to each worker, so that no other
 * worker (nor anyone who only listens to the network) learns a worker's key. Master:
 * keys[(r - 1) * 32 ...] for worker rank r = 1..world-1; worker: its own key. Nothing is
 * written anywhere; the secret halves are wiped here, the keys by the caller
 * (sodium_memzero). TEMPO_STATUS_WORKER when a peer does not take part within 30 s. */
TEMPO_WUR tempo_status tempo_net_keys_master(const int *fds, int world, uint8_t *keys);
TEMPO_WUR tempo_status tempo_net_keys_worker(int fd, uint8_t key[32]);

/* Closes (shutdown + close) every fd >= 0 of fds[0..n) and sets it to -1. */
void tempo_net_close_all(int *fds, int n);

#endif
