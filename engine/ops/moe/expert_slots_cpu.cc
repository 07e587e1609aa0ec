#include <cstddef>

#include "engine/ops/moe/expert_slots.h"

namespace moeserve::engine {

void MapToLocalSlotsCpu(const LocalExpertSlots& slots, const int32_t* expert_ids,
                        int64_t num_tokens, int64_t top_k, int32_t* local_ids) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t j = 0; j < top_k; ++j) {
      const int32_t e = expert_ids[t * top_k + j];
      int32_t slot = -1;
      if (e >= 0 && e < slots.num_experts) {
        const int64_t replica = t % slots.replica_count[static_cast<size_t>(e)];
        slot = slots.local_slot[static_cast<size_t>(e * slots.max_replicas + replica)];
      }
      local_ids[t * top_k + j] = slot;
    }
  }
}

}  // namespace moeserve::engine
