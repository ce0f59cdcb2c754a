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
  void *token; /* the transport's; give the message back with done() */
} tempo_in_msg;

typedef struct tempo_transport tempo_transport;

typedef struct {
  TEMPO_WUR tempo_status (*send)(tempo_transport *t, int worker, const tempo_out_msg *m);
  /* Waits up to timeout_s for a reply from any worker; *got false on timeout. */
  TEMPO_WUR tempo_status (*recv)(tempo_transport *t, double timeout_s, tempo_in_msg *m, bool *got);
  void (*done)(tempo_transport *t, tempo_in_msg *m);
  void (*free)(tempo_transport *t); /* stops and joins the workers */
} tempo_transport_ops;

struct tempo_transport {
  const tempo_transport_ops *ops;
  int n_workers;
};

/* n_workers threads, each with its own tempo_worker, fed by message queues. */
TEMPO_WUR tempo_status tempo_transport_inproc_create(int n_workers, tempo_transport **out);

/* Test hooks of the in-process transport. Call them only while no request is in flight
 * (e.g. before the first product or right after tempo_mm_step_end). */
void tempo_transport_inproc_set_fault(tempo_transport *t, int worker, const tempo_worker_fault *f);
uint64_t tempo_transport_inproc_faults(tempo_transport *t, int worker);
size_t tempo_transport_inproc_handles(tempo_transport *t, int worker);

#endif
