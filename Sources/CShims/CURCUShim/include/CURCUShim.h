// CURCUShim: SwiftEvent's door to liburcu (memb flavour). liburcu's read-side
// API is macros and static inline functions that Swift cannot import; these
// wrappers call the exported functions instead (no _LGPL_SOURCE).
#ifndef C_URCU_SHIM_H
#define C_URCU_SHIM_H

#ifdef __cplusplus
extern "C" {
#endif

// Enter/leave a read-side section. The calling thread is registered with
// liburcu on its first section and unregistered when it exits.
void se_rcu_read_lock(void);
void se_rcu_read_unlock(void);
int se_rcu_read_ongoing(void);

// Explicit registration, for threads that want to pay it up front.
void se_rcu_register_thread(void);
void se_rcu_unregister_thread(void);
int se_rcu_thread_is_registered(void);

// Waits for a grace period: every read-side section that began before the
// call has ended when it returns. Must not be called inside a section.
void se_rcu_synchronize(void);

// Calls reclaim(context) on liburcu's call_rcu thread once a grace period has
// passed; returns at once.
typedef void (*se_rcu_reclaim_fn)(void *context);
void se_rcu_retire(void *context, se_rcu_reclaim_fn reclaim);

// Waits until every reclamation queued so far has run (rcu_barrier).
void se_rcu_barrier(void);

// Count of reclamations that have run (for tests and introspection).
unsigned long se_rcu_reclaimed_count(void);

#ifdef __cplusplus
}
#endif
#endif
