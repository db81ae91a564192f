// The reference for tests/e2e/hf_tokenizer.sh: every document of a JSONL file ({"text": ...})
// encoded by Hugging Face's tokenizers.js (add_special_tokens: false, as retort encodes),
// each followed by the eos id, written to OUT as little-endian int32 — what `retort tokenize`
// writes into train.h5's `tokens` for the same documents. With a sixth argument `special`, the
// file's post-processor adds its special tokens (add_special_tokens: true; Mistral's <s> before
// each document), as retort's tokenize.bos_token does.
// Usage: node hf_tokenizer_reference.mjs TOKENIZERS_JS_MJS TOKENIZER_DIR DOCS.jsonl EOS_ID OUT [special]
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [lib, dir, docs, eos, out, special] = process.argv.slice(2);
const { Tokenizer } = await import(pathToFileURL(lib).href);
const read = (name) => JSON.parse(readFileSync(`${dir}/${name}`, "utf8"));
const tokenizer = new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json"));
const ids = [];
const started = Date.now();
let bytes = 0;
for (const line of readFileSync(docs, "utf8").split("\n")) {
  if (line.trim() === "") continue;
  const text = JSON.parse(line).text;
  if (/^[ \t\r\n\f\v]*$/.test(text)) continue;  // retort skips blank documents
  bytes += Buffer.byteLength(text);
  for (const id of tokenizer.encode(text, { add_special_tokens: special === "special" }).ids) ids.push(id);
  ids.push(Number(eos));
}
writeFileSync(out, Buffer.from(new Int32Array(ids).buffer));
const seconds = (Date.now() - started) / 1000;
console.log(`tokenizers.js: ${ids.length} ids from ${(bytes / 1e6).toFixed(2)} MB in ${seconds.toFixed(1)} s`);
