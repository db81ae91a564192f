// Sharded checkpoints: in a multi-rank run every rank that holds distinct state (dp index 0)
// writes its own file, so no rank ever gathers the whole model. A sharded checkpoint dir:
//   config.yaml, state.json   as in core/checkpoint.h, state.json["format"] = "sharded", the
//                             writing mesh under "mesh" and the sha256 of every shard file
//   shard-RRRRR.h5            one per writing rank: datasets model/<name>, exp_avg/<name>,
//                             exp_avg_sq/<name> holding pieces [n] of parameters; root attribute
//                             "pieces" (JSON) describes each piece:
//     {name, global_shape, shard_dim, shard_offset, local_shape, begin, n}
//   i.e. elements [begin, begin + n) (row-major) of the tp slice of `name` of shape local_shape,
//   which is rows (shard_dim 0) or columns (shard_dim 1) starting at shard_offset of the whole
//   parameter (shard_dim -1: the whole parameter). With fsdp a slice is cut into several pieces.
// Readers reassemble whole parameters from all files, checking that every element is present
// exactly once, so any mesh (or `retort export`, `eval`) can load them.
#pragma once
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/tensor.h"

namespace retort {

struct ShardPiece {
  std::string name;
  Shape global_shape, local_shape;
  int shard_dim = -1;
  int64_t shard_offset = 0, begin = 0, n = 0;
  Tensor value, exp_avg, exp_avg_sq;  // [n] each
};

// "shard-00003.h5"
std::string shard_file_name(int index);
// Writes one shard file atomically (temp + fsync + rename).
void write_shard_file(const std::string& path, const std::vector<ShardPiece>& pieces);
// The shard-*.h5 files of a checkpoint dir, sorted.
std::vector<std::string> shard_files(const std::string& dir);
// Fill `wholes` (names and whole shapes given) from dataset group `group` ("model",
// "exp_avg", "exp_avg_sq") of every shard file of `dir`. Error naming the file and parameter
// on a missing, duplicated or unexpected piece or a shape mismatch.
void read_from_shards(const std::string& dir, const std::string& group, std::vector<NamedTensor>& wholes);

}  // namespace retort
