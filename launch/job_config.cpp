#include "launch/commands.h"

namespace retort {

Config load_job_config(const JobArgs& args) { return Config::load(args.config_path, args.overrides); }

}  // namespace retort
