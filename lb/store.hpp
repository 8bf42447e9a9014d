// The narrow seam between the data path and a shared affinity store
// (docs/scale-out.md). The local AffinityTable stays what placement reads;
// a store only hears about placements (written behind, never waited for) and
// feeds other replicas' placements back through the sink.
#pragma once

#include <cstdint>

#include "lb/client_key.hpp"

namespace lb {

class AffinityStore {
 public:
  virtual ~AffinityStore() = default;
  // A worker placed `key` on `backend` (name hash) after the broker's CONNACK
  // success and the local table write. Any thread; never blocks, never fails
  // the session: when the store's bounded queue is full the write is dropped
  // and counted.
  virtual void placed(const ClientKey& key, uint64_t backend) = 0;
};

// What a store calls back (the Server implements it). Thread-safe.
class StoreSink {
 public:
  virtual ~StoreSink() = default;
  // Another replica's placement (live: just published) or an entry read back
  // while resynchronising (live false). Updates the local table; when live and
  // this replica forwards the same client to a different backend, closes that
  // session (cross-replica takeover) and returns true.
  virtual bool apply_remote(const ClientKey& key, uint64_t backend, bool live) = 0;
};

}  // namespace lb
