// Text inputs for the tokenizer: files, glob patterns and directories expanded into
// documents. A plain-text file is one document; a `.jsonl` file is one document per
// non-blank line, taken from a string field (e.g. {"text": "..."}).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace retort {

struct Document {
  std::string text;
  std::string source;  // "path" or "path:line" (for messages)
};

// Expands each input in order: a glob pattern (*, ?, [) to its matches, sorted; a directory
// to every regular file below it (recursively, hidden entries skipped), sorted; a file to
// itself. Duplicates are dropped (first occurrence kept). Throws retort::Error naming the
// input when a path does not exist or a pattern matches nothing.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

// Calls `each` with the documents of expand_inputs(inputs) in order, one at a time (a pass
// over any amount of text holds one document). Documents that are empty or only whitespace
// are skipped. Throws retort::Error "<file>:<line>: ..." for a JSONL line that is not a JSON
// object with string field `jsonl_field`, and "<file>: ..." for unreadable files.
void for_each_document(const std::vector<std::string>& inputs, const std::string& jsonl_field,
                       const std::function<void(Document&&)>& each);

}  // namespace retort
