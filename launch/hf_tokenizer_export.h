// The tokenizer files of a Hugging Face export (`retort export --format hf --tokenizer F`),
// encoding as the training data was: transformers adds what tokenizer_config.json and a
// tokenizer.json's post-processor say around each text by default, so both are made to add
// what the data had before each document, as the tokenize.json beside F records (`bos`, from
// tokenize.bos_token, or nothing):
//   F.model  the SentencePiece model unchanged, read as a LlamaTokenizer (retort's ids: 0 <unk>,
//            1 <s>, 2 </s>); add_bos_token only with a bos
//   F.json   as a PreTrainedTokenizerFast; the file unchanged when its post-processor already
//            adds exactly that, else the same JSON with the token-adding processors removed and
//            a TemplateProcessing of the bos added; unchanged, with a warning, when no
//            tokenize.json of this file says
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace retort {

struct HfTokenizerFiles {
  std::string name;        // tokenizer.model or tokenizer.json; empty: no tokenizer
  std::string bytes;       // its content
  nlohmann::json config;   // tokenizer_config.json
  int64_t bos_id = -1, eos_id = -1;  // config.json's bos_token_id, eos_token_id (-1: none)
};

// Throws Error naming F when it holds more ids than the model's vocab_size, is not a tokenizer
// retort encodes with, or its post-processor is of an unknown type.
HfTokenizerFiles hf_tokenizer_files(const std::string& path, int64_t vocab_size, int64_t seq_len);

}  // namespace retort
