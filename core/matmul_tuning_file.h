// The cuBLASLt algorithms one process chose by timing (train.matmul_tuning: timed) kept in a
// file, so that a later process — a resumed run — takes the same ones without timing them again
// and computes bitwise what the first process did.
//
//   {"identity": "<GPU name>, cuBLASLt <version>, 8 candidates, 32 MiB workspace",
//    "products": [{"key": "M,N,K,ta,tb,bf16,bf16_out,align_a,align_b,align_c,align_y",
//                  "shape": "matmul 8192x5504x1024 NT bf16 out", "candidates": 8, "chosen": 3,
//                  "heuristic_us": 181.2, "chosen_us": 160.4}, ...]}
//
// (ops::TunedProduct). The choices hold only for the identity they were timed on: the
// heuristic's candidate list depends on the GPU and the library.
#pragma once
#include <string>

namespace retort {

// Presets the choices in `path` (ops::preset_matmul_choices). Returns how many: 0 when there is
// no file, -1 when it was written for another identity (then it is ignored and the shapes are
// timed again). A file that is not such JSON: Error naming it and the key.
int load_matmul_choices(const std::string& path);
// Writes this process's choices so far (ops::matmul_tuned_products, and the loaded ones not
// used yet) to `path` atomically, creating its directory; nothing when there are none.
void save_matmul_choices(const std::string& path);

}  // namespace retort
