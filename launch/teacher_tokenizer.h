// Which tokenizer a teacher's ids are in, and the check that a token dataset or corpus is in the
// same ids (`retort generate`, `retort distill`; docs/DISTILLATION.md, "Matching vocabularies and
// tokenizers"). Tokenizers are compared by tokenizer_sha256 (SPEC §2): the SHA-256 of the
// tokenizer file, which `retort tokenize` copies unchanged.
#pragma once
#include <string>
#include <vector>

#include "launch/checkpoint_model.h"

namespace retort {

struct TeacherTokenizer {
  std::string file;                 // where the digests come from (for messages)
  std::vector<std::string> sha256;  // any of them may have encoded the data; empty: unknown
};

// A retort checkpoint: the tokenizer_sha256 of the first of its config's data.val / data.train
// files that exists. A transformers directory: the SHA-256 of its tokenizer.model and
// tokenizer.json (tokenize.tokenizer may have read either). Unknown when there is none.
TeacherTokenizer teacher_tokenizer(const LoadedModel& teacher);

// ConfigError "tokenizer mismatch: A has tokenizer_sha256 … but B has … (why)" unless the two
// agree; "none" (synthetic data, SPEC §2) and an unknown side are not compared.
void check_same_tokenizer(const std::string& a_file, const std::string& a_sha, const std::string& b_file,
                          const std::string& b_sha, const char* why);
void check_same_tokenizer(const TeacherTokenizer& teacher, const std::string& b_file, const std::string& b_sha,
                          const char* why);

}  // namespace retort
