// Config: defaults, YAML files, --set overrides, every error message, round trip, hash,
// and docs/CONFIG.md kept equal to the schema.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config.h"

using namespace retort;

namespace {

// The ConfigError message from running `f`, or "" if nothing was thrown.
template <class F>
std::string config_error(F f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(Config, DefaultsCoverEverySchemaKey) {
  Config c = Config::load("");
  EXPECT_EQ(c.get_string("run.dir"), "runs/default");
  EXPECT_EQ(c.get_int("model.vocab_size"), 4096);
  EXPECT_EQ(c.get_int("model.n_kv_heads"), 0);
  EXPECT_DOUBLE_EQ(c.get_float("model.rope_theta"), 500000.0);
  EXPECT_DOUBLE_EQ(c.get_float("model.norm_eps"), 1e-5);
  EXPECT_TRUE(c.get_bool("model.qk_norm"));
  EXPECT_FALSE(c.get_bool("parallel.sp"));
  EXPECT_EQ(c.get_string("data.train"), "");
  EXPECT_TRUE(c.get_list("tokenize.inputs").empty());
  EXPECT_DOUBLE_EQ(c.get_float("train.lr"), 3e-3);
  EXPECT_EQ(c.get_int("train.batch_tokens"), 16384);
  EXPECT_EQ(c.get_int("system.threads"), 0);
  EXPECT_FALSE(c.was_set("train.lr"));
  // Every key has a readable default of its own type.
  for (const ConfigKey& k : config_schema()) {
    EXPECT_FALSE(k.doc.empty()) << k.key;
    switch (k.type) {
      case ConfigType::Int: c.get_int(k.key); break;
      case ConfigType::Float: c.get_float(k.key); break;
      case ConfigType::Bool: c.get_bool(k.key); break;
      case ConfigType::String: c.get_string(k.key); break;
      case ConfigType::StringList: c.get_list(k.key); break;
      case ConfigType::IntList: c.get_int_list(k.key); break;
    }
  }
}

TEST(Config, NestedYamlFile) {
  std::string path = write_temp("retort_test_config_nested.yaml", R"(
# a comment
run:
  dir: runs/tiny
model:
  d_model: 64
  n_layers: 2
  rope_theta: 10000     # an integer literal is a fine float
  qk_norm: false
data:
  train: data/train.h5
tokenize:
  inputs: [a.txt, b.jsonl]
train:
  lr: 1e-3
train.steps: 20         # dotted keys at the top level work too
)");
  Config c = Config::load(path);
  EXPECT_EQ(c.source(), path);
  EXPECT_EQ(c.get_string("run.dir"), "runs/tiny");
  EXPECT_EQ(c.get_int("model.d_model"), 64);
  EXPECT_EQ(c.get_int("model.n_layers"), 2);
  EXPECT_DOUBLE_EQ(c.get_float("model.rope_theta"), 10000.0);
  EXPECT_FALSE(c.get_bool("model.qk_norm"));
  EXPECT_EQ(c.get_string("data.train"), "data/train.h5");
  EXPECT_EQ(c.get_list("tokenize.inputs"), (std::vector<std::string>{"a.txt", "b.jsonl"}));
  EXPECT_DOUBLE_EQ(c.get_float("train.lr"), 1e-3);
  EXPECT_EQ(c.get_int("train.steps"), 20);
  EXPECT_TRUE(c.was_set("train.lr"));
  EXPECT_FALSE(c.was_set("train.seed"));
  EXPECT_EQ(c.get_int("train.seed"), 1);  // untouched keys keep their defaults
  std::remove(path.c_str());
}

TEST(Config, SingleStringIsAOneElementList) {
  Config c = Config::from_yaml("tokenize:\n  inputs: corpus.txt\n", "t.yaml");
  EXPECT_EQ(c.get_list("tokenize.inputs"), std::vector<std::string>{"corpus.txt"});
}

TEST(Config, IntListsTakeIntegersOnly) {
  Config c = Config::from_yaml("checkpoint:\n  keep_steps: [30, +16, 7]\n", "t.yaml");
  EXPECT_EQ(c.get_int_list("checkpoint.keep_steps"), (std::vector<int64_t>{30, 16, 7}));
  EXPECT_NE(c.to_yaml().find("keep_steps: [30, 16, 7]\n"), std::string::npos);
  EXPECT_EQ(Config::from_yaml(c.to_yaml(), "r.yaml").get_int_list("checkpoint.keep_steps"),
            (std::vector<int64_t>{30, 16, 7}));  // the resolved config reads back
  c.set("checkpoint.keep_steps", "12");
  EXPECT_EQ(c.get_int_list("checkpoint.keep_steps"), std::vector<int64_t>{12});
  EXPECT_TRUE(Config::load("").get_int_list("checkpoint.keep_steps").empty());
  for (const char* bad : {"[1, x]", "[1.5]", "[[1]]", "{a: 1}"})
    EXPECT_NE(config_error([&] { c.set("checkpoint.keep_steps", bad); })
                  .find("key 'checkpoint.keep_steps': expected a list of integers"),
              std::string::npos)
        << bad;
}

TEST(Config, OverridesApplyInOrder) {
  Config c = Config::from_yaml("train:\n  steps: 5\n", "t.yaml",
                               {"train.steps=7", "train.lr=0.01", "model.qk_norm=false",
                                "tokenize.inputs=[x.txt, 'y z.txt']", "data.val=v.h5",
                                "run.dir=runs/a #1", "train.steps=9"});
  EXPECT_EQ(c.get_int("train.steps"), 9);
  EXPECT_DOUBLE_EQ(c.get_float("train.lr"), 0.01);
  EXPECT_FALSE(c.get_bool("model.qk_norm"));
  EXPECT_EQ(c.get_list("tokenize.inputs"), (std::vector<std::string>{"x.txt", "y z.txt"}));
  EXPECT_EQ(c.get_string("data.val"), "v.h5");
  EXPECT_EQ(c.get_string("run.dir"), "runs/a #1");  // strings are verbatim
  EXPECT_TRUE(c.was_set("data.val"));

  Config d = Config::load("", {"tokenize.inputs=one.txt", "data.train=", "data.val='q.h5'"});
  EXPECT_EQ(d.get_list("tokenize.inputs"), std::vector<std::string>{"one.txt"});
  EXPECT_EQ(d.get_string("data.train"), "");
  EXPECT_EQ(d.get_string("data.val"), "q.h5");
  d.set("tokenize.inputs", "[]");
  EXPECT_TRUE(d.get_list("tokenize.inputs").empty());
  d.set("train.seed", "42");
  EXPECT_EQ(d.get_int("train.seed"), 42);
}

TEST(Config, MalformedYamlNamesFileLineAndColumn) {
  std::string msg = config_error(
      [] { Config::from_yaml("train:\n  steps: 5\n  lr: [1, 2\nmodel: {\n", "bad.yaml"); });
  EXPECT_NE(msg.find("bad.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
  EXPECT_EQ(msg.rfind("bad.yaml:", 0), 0u) << msg;
  msg = config_error([] { Config::from_yaml("a: b\n  c: d\n", "bad2.yaml"); });
  EXPECT_EQ(msg.rfind("bad2.yaml:2:", 0), 0u) << msg;
  EXPECT_NE(msg.find("malformed YAML: "), std::string::npos) << msg;
}

TEST(Config, UnknownKeySuggestsNearest) {
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  lrr: 0.1\n", "c.yaml"); }),
            "c.yaml: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(config_error([] { Config::from_yaml("model:\n  dmodel: 8\n", "c.yaml"); }),
            "c.yaml: unknown key 'model.dmodel' (did you mean 'model.d_model'?)");
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  learning_rate_peak: 1\n", "c.yaml"); }),
            "c.yaml: unknown key 'train.learning_rate_peak' (see docs/CONFIG.md for the known "
            "keys)");
  EXPECT_EQ(nearest_config_key("train.stepz"), "train.steps");
}

TEST(Config, UnknownSection) {
  EXPECT_EQ(config_error([] { Config::from_yaml("trian:\n  lr: 0.1\n", "c.yaml"); }),
            "c.yaml: unknown section 'trian' (did you mean 'train'?)");
  EXPECT_EQ(config_error([] { Config::from_yaml("modle: 3\n", "c.yaml"); }),
            "c.yaml: unknown key 'modle' (did you mean 'model'?)");
}

TEST(Config, SectionAsScalarAndLeafAsMap) {
  EXPECT_EQ(config_error([] { Config::from_yaml("train: 5\n", "c.yaml"); }),
            "c.yaml: section 'train' must be a map of keys (e.g. 'train:' then indented "
            "'name: value' lines), got '5'");
  EXPECT_EQ(config_error([] { Config::from_yaml("model:\n  d_model:\n    x: 1\n", "c.yaml"); }),
            "c.yaml: key 'model.d_model': expected an integer, got a map");
  EXPECT_EQ(config_error([] { Config::from_yaml("- a\n- b\n", "c.yaml"); }),
            "c.yaml: expected a map of sections at the top level, got a list");
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  lr: 1\ntrain.lr: 2\n", "c.yaml"); }),
            "c.yaml: key 'train.lr' is given more than once");
}

TEST(Config, WrongTypes) {
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  steps: abc\n", "c.yaml"); }),
            "c.yaml: key 'train.steps': expected an integer, got 'abc'");
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  steps: 1.5\n", "c.yaml"); }),
            "c.yaml: key 'train.steps': expected an integer, got '1.5'");
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  lr: fast\n", "c.yaml"); }),
            "c.yaml: key 'train.lr': expected a number, got 'fast'");
  EXPECT_EQ(config_error([] { Config::from_yaml("train:\n  lr:\n", "c.yaml"); }),
            "c.yaml: key 'train.lr': expected a number, got nothing");
  EXPECT_EQ(config_error([] { Config::from_yaml("parallel:\n  sp: yes\n", "c.yaml"); }),
            "c.yaml: key 'parallel.sp': expected true or false, got 'yes'");
  EXPECT_EQ(config_error([] { Config::from_yaml("parallel:\n  sp: [true]\n", "c.yaml"); }),
            "c.yaml: key 'parallel.sp': expected true or false, got a list");
  EXPECT_EQ(config_error([] { Config::from_yaml("tokenize:\n  inputs: {a: 1}\n", "c.yaml"); }),
            "c.yaml: key 'tokenize.inputs': expected a list of strings, got a map");
  EXPECT_EQ(config_error([] { Config::from_yaml("tokenize:\n  inputs: [[a]]\n", "c.yaml"); }),
            "c.yaml: key 'tokenize.inputs': expected a list of strings, got a list");
  EXPECT_EQ(config_error([] { Config::from_yaml("run:\n  dir: [a]\n", "c.yaml"); }),
            "c.yaml: key 'run.dir': expected a string, got a list");
}

TEST(Config, OverrideErrors) {
  EXPECT_EQ(config_error([] { Config::load("", {"train.steps"}); }),
            "--set train.steps: expected KEY=VALUE, e.g. --set train.lr=0.001");
  EXPECT_EQ(config_error([] { Config::load("", {"train.steps=abc"}); }),
            "--set train.steps=abc: key 'train.steps': expected an integer, got 'abc'");
  EXPECT_EQ(config_error([] { Config::load("", {"train.lrr=1"}); }),
            "--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)");
  EXPECT_EQ(config_error([] { Config::load("", {"train=1"}); }),
            "--set train=1: 'train' is a section; set one of its keys, e.g. 'train.name=value'");
  EXPECT_EQ(config_error([] { Config::load("", {"model.qk_norm=1"}); }),
            "--set model.qk_norm=1: key 'model.qk_norm': expected true or false, got '1'");
  std::string msg = config_error([] { Config::load("", {"tokenize.inputs=[a, b"}); });
  EXPECT_EQ(msg.rfind("--set tokenize.inputs=[a, b:1:", 0), 0u) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
  Config c = Config::load("");
  EXPECT_EQ(config_error([&] { c.set("train.lr", "x"); }),
            "set train.lr=x: key 'train.lr': expected a number, got 'x'");
}

TEST(Config, MissingFile) {
  EXPECT_EQ(config_error([] { Config::load("/nonexistent/retort.yaml"); }),
            "/nonexistent/retort.yaml: cannot read config file (missing or unreadable)");
}

TEST(Config, GetterMisuseAndFail) {
  Config c = Config::from_yaml("", "c.yaml");
  EXPECT_NE(config_error([&] { c.get_int("train.stepz"); }).find("did you mean 'train.steps'"),
            std::string::npos);
  EXPECT_FALSE(config_error([&] { c.get_int("train.lr"); }).empty());
  EXPECT_DOUBLE_EQ(c.get_float("train.steps"), 1000.0);  // ints widen to float
  EXPECT_EQ(config_error([&] { c.fail("model.n_heads", "must divide model.d_model"); }),
            "c.yaml: key 'model.n_heads': must divide model.d_model");
}

TEST(Config, ToYamlRoundTrips) {
  Config a = Config::load("", {"run.dir=true", "data.train=", "data.val=123",
                               "tokenize.inputs=[a.txt, 'b: c', 'null', '']",
                               "tokenize.jsonl_field=#body", "train.lr=2.5e-4",
                               "model.rope_theta=1e6", "train.recompute=true"});
  std::string y = a.to_yaml();
  EXPECT_EQ(y.rfind("run:\n  dir: \"true\"\nmodel:\n  vocab_size: 4096\n", 0), 0u) << y;
  EXPECT_NE(y.find("  rope_theta: 1000000.0\n"), std::string::npos) << y;
  EXPECT_NE(y.find("  z_loss: 0.0001\n"), std::string::npos) << y;
  EXPECT_NE(y.find("  norm_eps: 1.0e-05\n"), std::string::npos) << y;
  Config b = Config::from_yaml(y, "resolved.yaml");
  EXPECT_EQ(b.to_yaml(), y);
  EXPECT_EQ(b.get_string("run.dir"), "true");
  EXPECT_EQ(b.get_string("data.val"), "123");
  EXPECT_EQ(b.get_string("tokenize.jsonl_field"), "#body");
  EXPECT_EQ(b.get_list("tokenize.inputs"),
            (std::vector<std::string>{"a.txt", "b: c", "null", ""}));
  EXPECT_DOUBLE_EQ(b.get_float("train.lr"), 2.5e-4);
  EXPECT_TRUE(b.get_bool("train.recompute"));
  for (const ConfigKey& k : config_schema()) EXPECT_TRUE(b.was_set(k.key)) << k.key;
}

TEST(Config, HashIsStableAndTracksValues) {
  Config a = Config::load("");
  EXPECT_EQ(a.hash().size(), 64u);
  EXPECT_EQ(a.hash(), Config::load("").hash());
  // Same values spelled differently hash the same.
  EXPECT_EQ(Config::load("", {"train.lr=3e-3"}).hash(),
            Config::load("", {"train.lr=0.003"}).hash());
  EXPECT_EQ(Config::from_yaml("train: {lr: 0.003}", "x").hash(), a.hash());
  EXPECT_NE(Config::load("", {"train.seed=2"}).hash(), a.hash());
  EXPECT_NE(Config::load("", {"train.lr=0.004"}).hash(), a.hash());
}

TEST(Config, ReferenceDocIsCurrent) {
  std::string md = config_reference_markdown();
  for (const ConfigKey& k : config_schema())
    EXPECT_NE(md.find("| `" + k.key + "` |"), std::string::npos) << k.key;
  std::ifstream in(RETORT_SOURCE_DIR "/docs/CONFIG.md");
  std::stringstream file;
  file << in.rdbuf();
  EXPECT_TRUE(file.str() == md)
      << "docs/CONFIG.md is out of date with core/config_schema.cpp; regenerate it with\n"
         "  build/retort config --reference > docs/CONFIG.md";
}

TEST(Config, DifferencesCompareResolvedValues) {
  const Config a = Config::from_yaml("train:\n  lr: 3.0e-3\n  steps: 10\n", "a.yaml");
  // the same values written otherwise (0.003, defaults given explicitly) are no difference
  const Config same = Config::from_yaml("train:\n  lr: 0.003\n  steps: 10\n  seed: 1\n", "same.yaml");
  EXPECT_TRUE(a.differences(same).empty());
  const Config b = Config::from_yaml("train:\n  lr: 1e-3\n  steps: 10\ncheckpoint:\n  keep_steps: [4, 8]\n", "b.yaml");
  const std::vector<Config::Difference> d = a.differences(b);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].key, "train.lr");
  EXPECT_EQ(d[0].ours, "0.003");
  EXPECT_EQ(d[0].theirs, "0.001");
  EXPECT_EQ(d[1].key, "checkpoint.keep_steps");
  EXPECT_EQ(d[1].ours, "[]");
  EXPECT_EQ(d[1].theirs, "[4, 8]");
}
