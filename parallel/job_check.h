// Start-up check that every rank of a job runs the same binary with the same resolved config:
// each rank hashes both, the hashes are gathered, and a mismatch ends the job with an error
// naming the ranks that differ from rank 0.
#pragma once
#include "core/config.h"
#include "parallel/mesh.h"

namespace retort {

void check_same_job(const Mesh& mesh, const Config& cfg);

// Fails (ConfigError on `parallel.*`) if the mesh uses an axis this build cannot run yet.
void require_supported_mesh(const Mesh& mesh, const Config& cfg);

}  // namespace retort
