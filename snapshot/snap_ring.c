/* SPDX-License-Identifier: MIT */
/* The ring that carries faulted pages from the fault thread to the copier. */
#include "snap_internal.h"

/*
 * The ring: the producer publishes a slot with a release store of head;
 * the consumer frees it with a release store of tail. Each side reads the
 * other's index with acquire, which orders the slot contents.
 */
bool bgs_ring_push(struct bgs_ring *r, const struct bgs_request *req)
{
	const uint32_t head =
		atomic_load_explicit(&r->head, memory_order_relaxed);
	const uint32_t tail =
		atomic_load_explicit(&r->tail, memory_order_acquire);

	if (head - tail == BGS_RING_SLOTS)
		return false;
	r->slot[head % BGS_RING_SLOTS] = *req;
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return true;
}

bool bgs_ring_pop(struct bgs_ring *r, struct bgs_request *req)
{
	const uint32_t tail =
		atomic_load_explicit(&r->tail, memory_order_relaxed);
	const uint32_t head =
		atomic_load_explicit(&r->head, memory_order_acquire);

	if (head == tail)
		return false;
	*req = r->slot[tail % BGS_RING_SLOTS];
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}
