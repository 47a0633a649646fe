// liburcu, memb flavour (membarrier-based read side), as the system ships it.
// _LGPL_SOURCE is deliberately not defined: SwiftEvent is BSD-licensed and
// calls liburcu's exported functions only.
#ifndef C_LIB_URCU_SHIM_H
#define C_LIB_URCU_SHIM_H
#include <urcu/urcu-memb.h>
#endif
