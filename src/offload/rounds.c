/* rounds.c - the request/reply mechanics shared by the offload engines (rounds.h). */
#include "offload/rounds.h"

#include <cblas.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "tempo/common.h"
#include "tempo/precision.h"

tempo_status tempo_rounds_init(tempo_rounds *r, const tempo_mm_config *cfg, const char *name,
                               const char *key_context) {
  tempo_status st;
  r->name = name;
  r->timeout = TEMPO_ENGINE_DEFAULT_TIMEOUT;
  if (sodium_init() < 0) return tempo_set_error(TEMPO_STATUS_INTERNAL, "%s: libsodium failed to start", name);
  /* the master mostly waits; each in-process worker thread runs single-threaded BLAS */
  openblas_set_num_threads(1);
  /* the in-process threads, or the configured transport (MPI under mpirun) */
  if ((st = cfg->transport ? cfg->transport(cfg->transport_ctx, cfg->workers, &r->tr)
                           : tempo_transport_inproc_create(cfg->workers, &r->tr)))
    return st;
  if (r->tr->timeout_s > 0) r->timeout = r->tr->timeout_s;
  r->nw = r->n_live = r->tr->n_workers;
  r->live = calloc((size_t)r->nw, sizeof *r->live);
  r->holds = calloc((size_t)r->nw, sizeof *r->holds);
  r->fails = calloc((size_t)r->nw, sizeof *r->fails);
  r->ab_next = calloc((size_t)r->nw, sizeof *r->ab_next);
  r->wcomp = calloc((size_t)r->nw, sizeof *r->wcomp);
  r->abandoned = calloc((size_t)r->nw * TEMPO_ROUNDS_ABANDONED, sizeof *r->abandoned);
  if (!r->live || !r->holds || !r->fails || !r->ab_next || !r->wcomp || !r->abandoned)
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory", name);
  for (int i = 0; i < r->nw; i++) r->live[i] = true;
  tempo_keyspace ks;
  tempo_keyspace_default(&ks);
  if (cfg->key_range > 1) ks.range = cfg->key_range;
  uint8_t secret[32];
  if (cfg->seed) {
    uint8_t sb[8];
    tempo_le_put64(sb, cfg->seed);
    crypto_generichash(secret, sizeof secret, sb, sizeof sb, (const uint8_t *)key_context, 17);
  }
  st = tempo_keygen_create(cfg->seed ? secret : NULL, &ks, &r->kg);
  if (!st) { /* a second stream for verification vectors, derived apart from the keys' */
    if (cfg->seed)
      crypto_generichash(secret, sizeof secret, secret, sizeof secret, (const uint8_t *)"tempo-verify-rand", 17);
    st = tempo_keygen_create(cfg->seed ? secret : NULL, &ks, &r->vg);
  }
  sodium_memzero(secret, sizeof secret);
  if (st) return st;
  if (cfg->audit_dir && (st = tempo_audit_writer_open(cfg->audit_dir, &r->audit))) return st;
  return TEMPO_STATUS_OK;
}

void tempo_rounds_free(tempo_rounds *r) {
  if (r->tr) r->tr->ops->free(r->tr); /* joins the workers before their operands go */
  r->tr = NULL;
  tempo_keygen_free(r->kg);
  tempo_keygen_free(r->vg);
  if (tempo_audit_writer_close(r->audit)) fprintf(stderr, "tempo: %s\n", tempo_errmsg());
  free(r->live);
  free(r->holds);
  free(r->fails);
  free(r->ab_next);
  free(r->wcomp);
  free(r->abandoned);
}

tempo_status tempo_rounds_streams_save(const tempo_rounds *r, uint8_t *out, size_t cap, size_t *len) {
  *len = 0;
  if (cap < TEMPO_ROUNDS_STREAMS_BYTES)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "%s: %zu bytes cannot hold the stream state (%d)", r->name,
                           cap, TEMPO_ROUNDS_STREAMS_BYTES);
  const uint8_t head[4] = {1, 2, 0, 0};
  memcpy(out, head, sizeof head);
  tempo_keygen_state_save(r->kg, out + 4);
  tempo_keygen_state_save(r->vg, out + 4 + TEMPO_KEYGEN_STATE_BYTES);
  *len = TEMPO_ROUNDS_STREAMS_BYTES;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_rounds_streams_restore(tempo_rounds *r, const uint8_t *in, size_t len) {
  const uint8_t *kg = in + 4, *vg = in + 4 + TEMPO_KEYGEN_STATE_BYTES;
  if (len != TEMPO_ROUNDS_STREAMS_BYTES || in[0] != 1 || in[1] != 2 || in[2] || in[3] ||
      !tempo_keygen_state_valid(kg) || !tempo_keygen_state_valid(vg))
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: malformed random-stream state (%zu bytes, version %u)", r->name,
                           len, len ? in[0] : 0u);
  tempo_status st = tempo_keygen_state_restore(r->kg, kg);
  return st ? st : tempo_keygen_state_restore(r->vg, vg);
}

void tempo_rounds_set_timeout(tempo_rounds *r, double seconds) { r->timeout = seconds > 0 ? seconds : 1e-3; }

void tempo_rounds_take_stats(tempo_rounds *r, tempo_mm_stats *run, tempo_mm_stats *step) {
  tempo_mm_stats_add(run, &r->st);
  tempo_mm_stats_add(step, &r->st);
  memset(&r->st, 0, sizeof r->st);
}

/* ---- workers: failures, eviction, choice ---- */

/* Per reason: what the eviction message says, and how many failures it counts for (a lost
 * connection cannot recover: it evicts at once). */
static const struct {
  const char *text;
  int weight;
} why_info[] = {{"failed verification", 1}, {"timed out", 1}, {"sent an error reply", 1},
                {"sent a malformed reply", 1}, {"sent a reply for another task", 1},
                {"lost its connection", TEMPO_ROUNDS_MAX_FAILURES}, {"reported a bad relay", 0},
                {"relayed a bad operand", 1}, {"passed on a wrong dW' sum", 1}};

const char *tempo_rounds_why(int why) { return why_info[why].text; }

void tempo_rounds_worker_failed(tempo_rounds *r, int w, int why) {
  if (why == TEMPO_WHY_VERIFY) r->st.verify_failures++;
  else if (why == TEMPO_WHY_TIMEOUT) r->st.timeouts++, r->no_relay = true;
  else if (why != TEMPO_WHY_COMPLAINED && why != TEMPO_WHY_SUM) r->st.worker_errors++; /* SUM: counted as its check */
  r->fails[w] += why_info[why].weight;
  if (r->live[w] && r->fails[w] >= TEMPO_ROUNDS_MAX_FAILURES) {
    r->live[w] = false;
    r->n_live--;
    r->st.evictions++;
    r->tr->evicted++;
    if (r->tr->ops->evict) r->tr->ops->evict(r->tr, w);
    const char *prefix = r->evict_prefix ? r->evict_prefix : "";
    if (why_info[why].weight >= TEMPO_ROUNDS_MAX_FAILURES)
      fprintf(stderr, "tempo: %sevicting worker %d: %s\n", prefix, w, why_info[why].text);
    else
      fprintf(stderr, "tempo: %sevicting worker %d: %s %d times\n", prefix, w, why_info[why].text, r->fails[w]);
  }
}

int tempo_rounds_precision(const tempo_rounds *r, int w) { return r->tr->precision ? r->tr->precision[w] : 0; }

int tempo_rounds_refuse_weaker(tempo_rounds *r, int min_precision) {
  int refused = 0;
  for (int w = 0; w < r->nw; w++) {
    const int p = tempo_rounds_precision(r, w);
    if (!r->live[w] || (p < TEMPO_PRECISION_COUNT && p <= min_precision)) continue;
    r->live[w] = false;
    r->n_live--;
    r->tr->evicted++;
    if (r->tr->ops->evict) r->tr->ops->evict(r->tr, w);
    fprintf(stderr, "tempo: %srefusing worker %d: it declares %s compute; this master accepts %s or better (--min-precision)\n",
            r->evict_prefix ? r->evict_prefix : "", w, tempo_precision_name(p), tempo_precision_name(min_precision));
    refused++;
  }
  return refused;
}

static bool was_abandoned(const tempo_rounds *r, int w, uint64_t id) {
  if (id == 0) return false; /* task ids start at 1; the ring starts zeroed */
  for (int i = 0; i < TEMPO_ROUNDS_ABANDONED; i++)
    if (r->abandoned[(size_t)w * TEMPO_ROUNDS_ABANDONED + i] == id) return true;
  return false;
}

bool tempo_rounds_busy(const tempo_round *rd, int w) {
  for (int i = 0; rd && i < rd->ntasks; i++)
    if (rd->tasks[i].pending && rd->tasks[i].worker == w) return true;
  return false;
}

/* ---- messages ---- */

tempo_status tempo_rounds_prepare(tempo_rounds *r, int w, tempo_msg_header *h, int nseg, const void *const *seg,
                                  const size_t *count, bool naive, tempo_out_msg *m) {
  m->nseg = nseg;
  uint64_t total = 0;
  for (int i = 0; i < nseg; i++) {
    m->seg[i] = (const uint8_t *)seg[i];
    m->seg_len[i] = count[i] * tempo_msg_dtype_size(h->dtype);
    total += m->seg_len[i];
  }
  h->payload_len = total;
  if (tempo_msg_header_check(h))
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "%s: built a bad request: %s", r->name, tempo_errmsg());
  tempo_msg_header_write(h, m->header);
  tempo_status st;
  if (r->audit && (st = tempo_audit_write(r->audit, TEMPO_AUDIT_UP, w, m->header, nseg, m->seg, m->seg_len)))
    return st;
  r->st.bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  if (naive) r->st.naive_bytes_up += TEMPO_MSG_HEADER_SIZE + total;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_rounds_send(tempo_rounds *r, int w, tempo_msg_header *h, int nseg, const void *const *seg,
                               const size_t *count, bool naive) {
  tempo_out_msg m;
  tempo_status st = tempo_rounds_prepare(r, w, h, nseg, seg, count, naive, &m);
  return st ? st : r->tr->ops->send(r->tr, w, &m);
}

/* Receives one message, with the audit and byte count; *got false on timeout. */
static tempo_status recv_msg(tempo_rounds *r, double timeout, tempo_in_msg *m, bool *got) {
  const double t0 = tempo_now();
  tempo_status st = r->tr->ops->recv(r->tr, timeout, m, got);
  r->st.t_wait += tempo_now() - t0;
  if (st || !*got) return st;
  r->st.bytes_down += m->len;
  if (r->audit && m->len >= TEMPO_MSG_HEADER_SIZE) {
    const uint8_t *seg[1] = {m->data + TEMPO_MSG_HEADER_SIZE};
    size_t len[1] = {m->len - TEMPO_MSG_HEADER_SIZE};
    if ((st = tempo_audit_write(r->audit, TEMPO_AUDIT_DOWN, m->worker, m->data, 1, seg, len))) {
      r->tr->ops->done(r->tr, m);
      return st;
    }
  }
  return TEMPO_STATUS_OK;
}

/* ---- rounds ---- */

static tempo_round_task *pending_of(tempo_round *rd, int w, uint64_t id, bool match_id) {
  for (int i = 0; i < rd->ntasks; i++) {
    tempo_round_task *t = &rd->tasks[i];
    if (t->pending && t->worker == w && (!match_id || t->task_id == id)) return t;
  }
  return NULL;
}

/* Remembers t as abandoned: its late reply is dropped, not charged. */
static void abandon(tempo_rounds *r, tempo_round_task *t) {
  const int w = t->worker;
  r->abandoned[(size_t)w * TEMPO_ROUNDS_ABANDONED + r->ab_next[w]] = t->task_id;
  r->ab_next[w] = (r->ab_next[w] + 1) % TEMPO_ROUNDS_ABANDONED;
}

/* Fails every pending task whose deadline has passed by `now`. */
static tempo_status expire(tempo_rounds *r, tempo_round *rd, double now) {
  tempo_status st = TEMPO_STATUS_OK;
  for (int i = 0; i < rd->ntasks && !st; i++) {
    tempo_round_task *t = &rd->tasks[i];
    if (!t->pending || t->sent_at + r->timeout > now) continue;
    abandon(r, t);
    st = rd->on_failure(rd, t, t->worker, TEMPO_WHY_TIMEOUT);
  }
  return st;
}

/* Handles one reply m; *pending drops when it completes a task. */
static tempo_status handle(tempo_rounds *r, tempo_round *rd, tempo_in_msg *m, int *pending) {
  const int w = m->worker;
  tempo_msg_header h;
  const uint8_t *pay;
  if (w < 0 || w >= r->nw)
    return tempo_set_error(TEMPO_STATUS_INTERNAL, "%s: reply from unknown worker %d", r->name, w);
  if (m->lost) { /* evicts w and reassigns everything it had */
    if (!r->live[w]) return TEMPO_STATUS_OK;
    tempo_round_task *t = pending_of(rd, w, 0, false);
    if (!t) return tempo_rounds_worker_failed(r, w, TEMPO_WHY_LOST), TEMPO_STATUS_OK;
    return rd->on_failure(rd, t, w, TEMPO_WHY_LOST);
  }
  if (tempo_msg_decode(m->data, m->len, &h, &pay))
    return rd->on_failure(rd, pending_of(rd, w, 0, false), w, TEMPO_WHY_MALFORMED);
  tempo_round_task *t = pending_of(rd, w, h.task_id, true);
  if (!t) {
    if (!was_abandoned(r, w, h.task_id) && h.op != TEMPO_OP_ACK) /* late replies are dropped */
      return rd->on_failure(rd, pending_of(rd, w, 0, false), w, TEMPO_WHY_OTHER_TASK);
    return TEMPO_STATUS_OK;
  }
  if (h.op == TEMPO_OP_ERROR && h.code == (uint16_t)-TEMPO_STATUS_BAD_RELAY && t->relayer >= 0) {
    t->complained = true, t->blamed = t->relayer; /* judged at the round's end */
    return rd->on_failure(rd, t, w, TEMPO_WHY_COMPLAINED);
  }
  if (h.op == TEMPO_OP_ERROR) return rd->on_failure(rd, t, w, TEMPO_WHY_ERROR);
  if (!rd->fits(rd, t, &h)) return rd->on_failure(rd, t, w, TEMPO_WHY_MALFORMED);
  t->reported = true;
  tempo_msg_chain_digest_get(&h, t->chain_digest);
  rd->msg = m;
  const bool ok = rd->consume(rd, t, &h, pay);
  rd->msg = NULL;
  if (!ok) return rd->on_failure(rd, t, w, TEMPO_WHY_VERIFY);
  t->pending = false;
  (*pending)--;
  r->wcomp[w] += (double)h.compute_ns * 1e-9;
  if (rd->done) rd->done(rd, t);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_rounds_collect(tempo_rounds *r, tempo_round *rd, double t_start) {
  int pending = 0;
  for (int i = 0; i < rd->ntasks; i++) pending += rd->tasks[i].pending;
  memset(r->wcomp, 0, (size_t)r->nw * sizeof *r->wcomp);
  tempo_status st = TEMPO_STATUS_OK;
  while (pending > 0 && !st) {
    double now = tempo_now(), deadline = 1e300;
    for (int i = 0; i < rd->ntasks; i++)
      if (rd->tasks[i].pending && rd->tasks[i].sent_at + r->timeout < deadline)
        deadline = rd->tasks[i].sent_at + r->timeout;
    if (now >= deadline) {
      st = expire(r, rd, now);
      continue;
    }
    tempo_in_msg m;
    bool got;
    if ((st = recv_msg(r, deadline - now, &m, &got)) || !got) continue;
    st = handle(r, rd, &m, &pending);
    r->tr->ops->done(r->tr, &m);
  }
  for (int i = 0; st && i < rd->ntasks; i++) /* a round given up on: its late replies are not the workers' fault */
    if (rd->tasks[i].pending) rd->tasks[i].pending = false, abandon(r, &rd->tasks[i]);
  /* a bad relay is the relayer's, unless it complained too (it passed on nothing, having
   * got nothing valid itself): then the complaint upstream names the culprit */
  for (int i = 0; !st && i < rd->ntasks; i++) {
    const tempo_round_task *t = &rd->tasks[i];
    const int up = t->relayer_task;
    if (t->complained && !(up >= 0 && up < rd->ntasks && rd->tasks[up].complained))
      tempo_rounds_worker_failed(r, t->blamed, TEMPO_WHY_RELAY);
  }
  double crit = 0; /* the slowest worker's compute time bounds the round's */
  for (int i = 0; i < r->nw; i++) crit = r->wcomp[i] > crit ? r->wcomp[i] : crit;
  double wait = tempo_now() - t_start - rd->consume_time - crit;
  r->st.t_transfer += wait > 0 ? wait : 0;
  return st;
}

tempo_status tempo_rounds_release(tempo_rounds *r, bool count_naive) {
  uint64_t *want = calloc((size_t)r->nw, sizeof *want);
  if (!want) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory", r->name);
  tempo_status st = TEMPO_STATUS_OK;
  int pending = 0;
  double t0 = tempo_now();
  for (int w = 0; w < r->nw && !st; w++) {
    if (!r->holds[w] || !r->live[w]) continue;
    tempo_msg_header h;
    tempo_msg_header_init(&h, TEMPO_OP_RELEASE);
    h.flags = TEMPO_MSG_F_RELEASE_ALL;
    h.task_id = want[w] = ++r->next_task;
    st = tempo_rounds_send(r, w, &h, 0, NULL, NULL, count_naive);
    pending++;
    r->holds[w] = false;
  }
  while (pending > 0 && !st) {
    double left = t0 + r->timeout - tempo_now();
    tempo_in_msg m;
    bool got = false;
    if (left <= 0) { /* no ACK in time: count a failure against each silent worker */
      for (int w = 0; w < r->nw; w++)
        if (want[w]) tempo_rounds_worker_failed(r, w, TEMPO_WHY_TIMEOUT);
      break;
    }
    if ((st = recv_msg(r, left, &m, &got)) || !got) continue;
    tempo_msg_header h;
    const uint8_t *pay;
    if (m.lost && m.worker >= 0 && m.worker < r->nw && want[m.worker]) {
      tempo_rounds_worker_failed(r, m.worker, TEMPO_WHY_LOST);
      want[m.worker] = 0;
      pending--;
    } else if (!m.lost && m.worker >= 0 && m.worker < r->nw) {
      const bool ok = !tempo_msg_decode(m.data, m.len, &h, &pay);
      if (ok && h.op == TEMPO_OP_ACK && want[m.worker] && h.task_id == want[m.worker]) {
        want[m.worker] = 0;
        pending--;
      } else if (r->live[m.worker] && !(ok && was_abandoned(r, m.worker, h.task_id))) {
        /* neither its ACK nor a late reply to a task given up on: unsolicited bytes are charged */
        tempo_rounds_worker_failed(r, m.worker, ok ? TEMPO_WHY_OTHER_TASK : TEMPO_WHY_MALFORMED);
      }
    }
    r->tr->ops->done(r->tr, &m);
  }
  free(want);
  return st;
}

/* ---- dW' partial sums ---- */

static bool digest_is(const void *bytes, size_t len, const uint8_t *d) {
  uint8_t got[TEMPO_MSG_CHAIN_DIGEST];
  tempo_msg_chain_digest(bytes, len, got);
  return sodium_memcmp(got, d, sizeof got) == 0;
}

int tempo_rounds_sum_partials(tempo_rounds *r, void *dw, int nb, size_t ws, uint16_t dtype,
                               const tempo_round_task *chain, const uint8_t *sum_digest) {
  const size_t z = tempo_msg_dtype_size(dtype);
  int culprit = -1;
  for (int b = 1; b < nb; b++) {
    /* a member that got nothing (in time) was held up, not lied to: like a timeout, no proof */
    if (chain && culprit < 0 && digest_is("", 0, chain[b].chain_digest)) chain = NULL;
    if (chain && culprit < 0 && !digest_is(dw, ws * z, chain[b].chain_digest)) culprit = b - 1;
    r->st.master_bytes += 3 * (uint64_t)ws * z;
    if (dtype == TEMPO_DTYPE_F64)
      cblas_daxpy((int)ws, 1.0, (const double *)dw + (size_t)b * ws, 1, dw, 1);
    else
      cblas_saxpy((int)ws, 1.0f, (const float *)dw + (size_t)b * ws, 1, dw, 1);
  }
  if (chain && culprit < 0 && !digest_is(dw, ws * z, sum_digest)) culprit = nb - 1;
  if (culprit >= 0) tempo_rounds_worker_failed(r, chain[culprit].worker, TEMPO_WHY_SUM);
  return culprit;
}

/* ---- sites ---- */

tempo_status tempo_rounds_site(const tempo_rounds *r, void *sitesp, int *n_sites, size_t elem, int slot,
                               void **out) {
  void **sites = sitesp;
  if (slot < 1) return tempo_set_error(TEMPO_STATUS_INTERNAL, "%s: site without a slot", r->name);
  if (slot > *n_sites) {
    int n = slot + 16;
    uint8_t *s = realloc(*sites, (size_t)n * elem);
    if (!s) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory for sites", r->name);
    memset(s + (size_t)*n_sites * elem, 0, (size_t)(n - *n_sites) * elem);
    *sites = s;
    *n_sites = n;
  }
  *out = (uint8_t *)*sites + (size_t)(slot - 1) * elem;
  return TEMPO_STATUS_OK;
}

bool tempo_rounds_same_shape(const tempo_mm_shape *a, const tempo_mm_shape *b) {
  return a->batch == b->batch && a->m == b->m && a->n == b->n && a->p == b->p && a->w_trans == b->w_trans;
}

tempo_status tempo_site_keys_prepare(const tempo_rounds *r, tempo_site_keys *k, const tempo_mm_shape *sh,
                                     size_t *x, size_t *w, size_t *y) {
  tempo_status st;
  if (!k->used || !tempo_rounds_same_shape(&k->shape, sh)) {
    for (int i = 0; i < k->nkeys; i++) tempo_obf_key_free(&k->keys[i]);
    free(k->keys);
    k->nkeys = 0;
    k->keys = calloc((size_t)sh->batch, sizeof *k->keys);
    if (!k->keys) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: out of memory for keys", r->name);
    for (; k->nkeys < sh->batch; k->nkeys++)
      if ((st = tempo_obf_key_alloc(&k->keys[k->nkeys], sh->m, sh->n, sh->p))) return st;
    k->shape = *sh;
    k->used = true;
  }
  size_t b = (size_t)sh->batch;
  if (!tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->n, x) || !tempo_mul3_size(b, (size_t)sh->n, (size_t)sh->p, w) ||
      !tempo_mul3_size(b, (size_t)sh->m, (size_t)sh->p, y))
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "%s: product too large", r->name);
  return TEMPO_STATUS_OK;
}

tempo_status tempo_site_keys_backward_check(const tempo_site_keys *k, const tempo_mm_shape *sh) {
  if (!k->fwd_valid)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "matmul: backward without a training forward of this site in this step");
  if (!tempo_rounds_same_shape(&k->shape, sh))
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "matmul: backward shape differs from its forward");
  return TEMPO_STATUS_OK;
}

void tempo_site_keys_wipe(tempo_site_keys *k) {
  for (int i = 0; i < k->nkeys; i++) tempo_obf_key_wipe(&k->keys[i]);
  k->fwd_valid = false;
}

void tempo_site_keys_free(tempo_site_keys *k) {
  for (int i = 0; i < k->nkeys; i++) tempo_obf_key_free(&k->keys[i]);
  free(k->keys);
  memset(k, 0, sizeof *k);
}
