#define _GNU_SOURCE
#include "CURCUShim.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <urcu/urcu-memb.h>

// ThreadSanitizer does not see liburcu's synchronization: liburcu is not
// instrumented, a grace period is a membarrier plus futex inside it, and
// call_rcu hands its node to the call_rcu thread through liburcu's own
// queue. So TSan would report every reclamation as racing with the readers
// that finished before it, and with the thread that queued it. We tell TSan
// exactly these two guarantees, and nothing else:
// 1. the end of every read-side section happens before any reclamation or
//    synchronize that follows it (one sync address carries that edge);
// 2. queueing a reclamation happens before it runs (the node's address).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SE_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SE_TSAN 1
#endif

#ifdef SE_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char se_rcu_grace_token;
#define SE_TSAN_READER_DONE() __tsan_release(&se_rcu_grace_token)
#define SE_TSAN_GRACE_PASSED() __tsan_acquire(&se_rcu_grace_token)
#define SE_TSAN_HANDED_OVER(node) __tsan_release(node)
#define SE_TSAN_TAKEN_OVER(node) __tsan_acquire(node)
#else
#define SE_TSAN_READER_DONE() ((void)0)
#define SE_TSAN_GRACE_PASSED() ((void)0)
#define SE_TSAN_HANDED_OVER(node) ((void)0)
#define SE_TSAN_TAKEN_OVER(node) ((void)0)
#endif

static _Thread_local int se_rcu_registered = 0;
static pthread_key_t se_rcu_exit_key;
static pthread_once_t se_rcu_key_once = PTHREAD_ONCE_INIT;
static _Atomic unsigned long se_rcu_reclaimed = 0;

static void se_rcu_thread_exit(void *unused) {
    (void)unused;
    if (se_rcu_registered) {
        urcu_memb_unregister_thread();
        se_rcu_registered = 0;
    }
}

static void se_rcu_make_key(void) {
    pthread_key_create(&se_rcu_exit_key, se_rcu_thread_exit);
}

void se_rcu_register_thread(void) {
    if (se_rcu_registered) return;
    pthread_once(&se_rcu_key_once, se_rcu_make_key);
    urcu_memb_register_thread();
    se_rcu_registered = 1;
    // A non-NULL value makes the key's destructor run when the thread exits.
    pthread_setspecific(se_rcu_exit_key, (void *)1);
}

void se_rcu_unregister_thread(void) {
    if (!se_rcu_registered) return;
    urcu_memb_unregister_thread();
    se_rcu_registered = 0;
    pthread_setspecific(se_rcu_exit_key, NULL);
}

int se_rcu_thread_is_registered(void) {
    return se_rcu_registered;
}

void se_rcu_read_lock(void) {
    if (!se_rcu_registered) se_rcu_register_thread();
    urcu_memb_read_lock();
}

void se_rcu_read_unlock(void) {
    SE_TSAN_READER_DONE();
    urcu_memb_read_unlock();
}

int se_rcu_read_ongoing(void) {
    return se_rcu_registered && urcu_memb_read_ongoing();
}

void se_rcu_synchronize(void) {
    urcu_memb_synchronize_rcu();
    SE_TSAN_GRACE_PASSED();
}

struct se_rcu_node {
    struct rcu_head head; // first member: the node is recovered from &head
    void *context;
    se_rcu_reclaim_fn reclaim;
};

static void se_rcu_run_reclaim(struct rcu_head *head) {
    struct se_rcu_node *node = (struct se_rcu_node *)head;
    SE_TSAN_TAKEN_OVER(node);
    SE_TSAN_GRACE_PASSED();
    node->reclaim(node->context);
    free(node);
    atomic_fetch_add_explicit(&se_rcu_reclaimed, 1, memory_order_relaxed);
}

// liburcu's call_rcu thread must be paused around fork() and recreated in the
// child; installed once, when the first reclamation creates that thread.
static pthread_once_t se_rcu_atfork_once = PTHREAD_ONCE_INIT;
static void se_rcu_install_atfork(void) {
    pthread_atfork(urcu_memb_call_rcu_before_fork,
                   urcu_memb_call_rcu_after_fork_parent,
                   urcu_memb_call_rcu_after_fork_child);
}

void se_rcu_retire(void *context, se_rcu_reclaim_fn reclaim) {
    pthread_once(&se_rcu_atfork_once, se_rcu_install_atfork);
    struct se_rcu_node *node = malloc(sizeof *node);
    if (node == NULL) {
        // Out of memory: fall back to waiting for the grace period here.
        se_rcu_synchronize();
        reclaim(context);
        return;
    }
    node->context = context;
    node->reclaim = reclaim;
    // call_rcu takes a read-side lock internally, so the caller must be registered.
    if (!se_rcu_registered) se_rcu_register_thread();
    SE_TSAN_HANDED_OVER(node);
    urcu_memb_call_rcu(&node->head, se_rcu_run_reclaim);
}

void se_rcu_barrier(void) {
    if (!se_rcu_registered) se_rcu_register_thread();
    urcu_memb_barrier();
}

unsigned long se_rcu_reclaimed_count(void) {
    return atomic_load_explicit(&se_rcu_reclaimed, memory_order_relaxed);
}
