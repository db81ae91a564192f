// Start-up check that every rank of a job runs the same binary with the same resolved config:
// each rank hashes both, the hashes are gathered, and a mismatch ends the job with an error
// naming the ranks that differ from rank 0.
#pragma once
#include "core/config.h"
#include "parallel/mesh.h"

namespace retort {

void check_same_job(const Mesh& mesh, const Config& cfg);

// ConfigError on `parallel.tp` when tp does not divide the model dims it splits (n_kv_heads,
// d_ff, vocab_size).
void check_mesh_fits_model(const Mesh& mesh, const Config& cfg);

}  // namespace retort
