# Rewrites a .cu file for the block simulator: `k<<<cfg>>>(args)` -> `sim::launch(k, cfg)(args)`,
# `extern __shared__ T name[];` -> a pointer to the simulated dynamic shared memory,
# `__shared__ T name[N];` -> a reference to the running block's copy of it (sim::block_copy; one
# set of copies per stream's thread).
import re, sys, pathlib
src = pathlib.Path(sys.argv[1]).read_text()
src = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1* \2 = reinterpret_cast<\1*>(sim::dyn_smem);', src)
src = re.sub(r'(?<!extern )__shared__ ([\w:]+) (\w+)((?:\[[^\]]*\])*);',
             r'static thread_local \1 \2_sim_copies[2]\3; auto& \2 = \2_sim_copies[sim::block_copy];', src)
src, n = re.subn(r'(\w+)<<<(.*?)>>>\(', r'sim::launch(\1, \2)(', src, flags=re.S)
pathlib.Path(sys.argv[2]).write_text(src)
