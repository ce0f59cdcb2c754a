/* transport.h - how the master's engine reaches its workers (internal).
 *
 * A transport moves request messages (header + payload segments) to worker i and brings
 * back replies (contiguous header + payload) from any worker. The engine validates every
 * reply with the protocol decoder: a transport only frames bytes. In-process, the
 * payload segments are passed by reference (no copy); the engine guarantees they stay
 * valid and unchanged until the handles stored from them are released, and counts the
 * bytes as a network would send them. An MPI transport (next issue) implements the same
 * four operations: send = MPI_Send of the header then the segments, recv = probe + receive
 * of a header, check, then the payload. */
#ifndef TEMPO_OFFLOAD_TRANSPORT_H
#define TEMPO_OFFLOAD_TRANSPORT_H

#include "tempo/protocol.h"
#include "tempo/worker.h"
#include "tempo/worker_fault.h"

#define TEMPO_ENGINE_DEFAULT_TIMEOUT 60.0 /* seconds a worker may take for one reply (timeout_s 0) */
#define TEMPO_TRANSPORT_HELD_PER_WORKER 4 /* replies the engine may hold per worker before done() */

typedef struct {
  uint8_t header[TEMPO_MSG_HEADER_SIZE]; /* encoded, checked by the sender */
  int nseg;
  const uint8_t *seg[4];
  size_t seg_len[4];
} tempo_out_msg;

typedef struct {
  int worker;          /* who sent it */
  const uint8_t *data; /* header + payload, untrusted */
  size_t len;
  bool lost;   /* no message: the worker's connection is gone (process died); evict it now */
  void *token; /* the transport's; give the message back with done() */
} tempo_in_msg;

typedef struct tempo_transport tempo_transport;

typedef struct {
  TEMPO_WUR tempo_status (*send)(tempo_transport *t, int worker, const tempo_out_msg *m);
  /* Waits up to timeout_s for a reply from any worker; *got false on timeout. */
  TEMPO_WUR tempo_status (*recv)(tempo_transport *t, double timeout_s, tempo_in_msg *m, bool *got);
  /* Gives m back; a message may be held across later recv calls until then (the engine keeps a
   * multi-share product's replies until it has combined them, at most
   * TEMPO_TRANSPORT_HELD_PER_WORKER per worker). No-op when m->token is NULL. */
  void (*done)(tempo_transport *t, tempo_in_msg *m);
  void (*free)(tempo_transport *t); /* stops and joins the workers */
  /* Optional (NULL: the engine sends one by one). Sends n messages to n distinct workers
   * whose segment number `shared` holds the same bytes at the same address in every
   * message (W' of a row-split product): the transport may put those bytes on the wire
   * once and have the workers relay them to each other (MPI). */
  TEMPO_WUR tempo_status (*send_group)(tempo_transport *t, int n, const int *workers, const tempo_out_msg *msgs,
                                       int shared);
  /* Optional: the engine evicted `worker`; drop what is still in flight to it. */
  void (*evict)(tempo_transport *t, int worker);
  /* Optional (used only when can_reduce is set). Sends the n BACKWARD requests (all with
   * WANT_DW) of one row-split product to n distinct workers as a dW' reduction chain in that
   * order (envelope.h): each adds its partial dW' to its predecessor's sum and passes it on;
   * the replies of all but the last carry dX' only (ACK without dX'), the last one's dW' is
   * the sum of all. */
  TEMPO_WUR tempo_status (*send_reduce)(tempo_transport *t, int n, const int *workers, const tempo_out_msg *msgs);
} tempo_transport_ops;

struct tempo_transport {
  const tempo_transport_ops *ops;
  int n_workers;
  double timeout_s;  /* the reply timeout the transport suggests (0 = engine default) */
  uint64_t wire_up;  /* bytes the master actually put on the wire (transport-counted) */
  uint64_t min_up;   /* engine-counted minimum: each blinded operand once, one header per message */
  int evicted;       /* workers the engine evicted (set by the engine; a transport may skip them) */
  bool can_reduce;   /* send_reduce may be used (TEMPO_MPI_REDUCE=0 clears it) */
  bool relays;       /* send_group relays the shared segment among the workers (TEMPO_MPI_RELAY=0 clears
                      * it): a receiver's BAD_RELAY complaint then names its predecessor in the group */
  /* (n_workers) the compute precision each worker declared when it connected (precision.h;
   * untrusted: a value >= TEMPO_PRECISION_COUNT is refused by the engine); owned by the
   * transport; NULL = every worker FP32 */
  const uint8_t *precision;
};

/* tempo_mm_config.transport (mm_types.h) makes one of these. */

/* n_workers threads, each with its own tempo_worker, fed by message queues. Payloads go by
 * reference. send_group relays the shared segment's reference from each worker's thread to
 * the next (the master's wire bytes count it once), and send_reduce runs the dW' chain
 * through the threads: member i waits for member i-1's partial sum, adds its own
 * (tempo_worker_handle_chain) and hands the sum to member i+1. A member waiting for a relay
 * or a partial gives up (an ERROR reply / an empty partial passed on) when its predecessor
 * is evicted, when the engine queues it another request (the engine has given up on the
 * round), after timeout_s (default TEMPO_ENGINE_DEFAULT_TIMEOUT) or when the transport
 * stops, so no thread waits forever and free never hangs. */
TEMPO_WUR tempo_status tempo_transport_inproc_create(int n_workers, tempo_transport **out);

/* Test hooks of the in-process transport. Call them only while no request is in flight
 * (e.g. before the first product or right after tempo_mm_step_end); pause at any time. */
void tempo_transport_inproc_set_fault(tempo_transport *t, int worker, const tempo_worker_fault *f);
void tempo_transport_inproc_set_bad_sum(tempo_transport *t, int worker, long from); /* worker_fault.h */
/* Worker `worker`'s declared precision (default: its backend's, FP32), for tests. */
void tempo_transport_inproc_set_precision(tempo_transport *t, int worker, int precision);
/* Worker `worker`'s result and sum hooks (worker.h; NULL: none), for rogue workers written in tests. */
void tempo_transport_inproc_set_hooks(tempo_transport *t, int worker, const tempo_worker_hooks *h);
uint64_t tempo_transport_inproc_faults(tempo_transport *t, int worker);
bool tempo_transport_inproc_evicted(tempo_transport *t, int worker); /* the engine evicted it */
size_t tempo_transport_inproc_handles(tempo_transport *t, int worker);
/* A paused worker takes no request (a stalled process) until resumed; free still ends it. */
void tempo_transport_inproc_pause(tempo_transport *t, int worker, bool paused);

typedef struct {
  uint64_t groups, relays; /* send_group calls; shared segments handed from worker to worker */
  uint64_t chains, partials; /* send_reduce calls; non-empty partial sums handed on */
} tempo_inproc_counts;
void tempo_transport_inproc_counts(tempo_transport *t, tempo_inproc_counts *c);

#endif
