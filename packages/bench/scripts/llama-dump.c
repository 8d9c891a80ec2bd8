// Dumps llama.cpp's intermediate tensors and logits, step by step, with node-llama-cpp's own
// prebuilt libraries: the tool that found where our arithmetic differed from llama.cpp's in the
// last bit (docs/testing.md, "The rest of the way to bit-equality"). Not part of any build or test.
//
// Build (B = node_modules/@node-llama-cpp/linux-x64/bins/linux-x64, headers from the llama.cpp
// source of the bundled release, e.g. node-llama-cpp's llama/gitRelease.bundle checked out in SRC):
//   cc -O2 -Wall -Wextra -o llama-dump llama-dump.c -I$SRC/include -I$SRC/ggml/include -L$B
//      -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,$B -lm   (one line)
// Run (LLAMA_BINS=$B):
//   llama-dump MODEL THREADS DUMP_STEP OUTDIR PROMPT_TOKENS... -- G16        (greedy, 16 steps)
//   llama-dump MODEL THREADS DUMP_STEP OUTDIR PROMPT_TOKENS... -- TOKENS...  (teacher forcing)
// Step 0 evaluates the prompt as one batch, step s > 0 the s-th token alone (as llama.cpp's
// generation does). Every step's last-row logits go to OUTDIR/logits_SS.bin (float32) and its
// greedy token to stdout; at DUMP_STEP every contiguous F32 tensor of the graph goes to
// OUTDIR/NNN_name.bin, listed with its op and shape on stderr.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#ifndef CPU_VARIANT
#define CPU_VARIANT "libggml-cpu-haswell.so"
#endif

static int g_step = 0, g_dump = -1, g_seq = 0;
static const char* g_out;

static bool on_tensor(struct ggml_tensor* t, bool ask, void* user) {
  (void)user;
  if (ask) return g_step == g_dump;
  if (g_step != g_dump || t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) return true;
  char path[1024];
  snprintf(path, sizeof path, "%s/%03d_%s.bin", g_out, g_seq++, t->name);
  FILE* f = fopen(path, "wb");
  if (f) {
    fwrite(t->data, 1, ggml_nbytes(t), f);
    fclose(f);
  }
  fprintf(stderr, "%s %s [%lld %lld %lld %lld]\n", path, ggml_op_desc(t), (long long)t->ne[0], (long long)t->ne[1],
          (long long)t->ne[2], (long long)t->ne[3]);
  return true;
}

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: %s MODEL THREADS DUMP_STEP OUTDIR PROMPT... -- (G<steps> | TOKENS...)\n", argv[0]);
    return 2;
  }
  const char* model_path = argv[1];
  const int threads = atoi(argv[2]);
  g_dump = atoi(argv[3]);
  g_out = argv[4];
  static llama_token prompt[4096], teach[4096];
  int n_prompt = 0, n_teach = 0, greedy = 0, i = 5;
  for (; i < argc && strcmp(argv[i], "--") != 0 && n_prompt < 4096; i++) prompt[n_prompt++] = atoi(argv[i]);
  for (i++; i < argc && n_teach < 4096; i++) {
    if (argv[i][0] == 'G') {
      greedy = 1;
      n_teach = atoi(argv[i] + 1);
    } else {
      teach[n_teach++] = atoi(argv[i]);
    }
  }
  llama_backend_init();
  // The CPU variant llama.cpp picks on an AVX2 machine; dlopen'ed by path next to libggml.
  char variant[2048];
  const char* dir = getenv("LLAMA_BINS");
  snprintf(variant, sizeof variant, "%s/%s", dir ? dir : ".", CPU_VARIANT);
  ggml_backend_load(variant);
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  struct llama_model* model = llama_model_load_from_file(model_path, mp);
  if (!model) return 1;
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 4096 + 256;
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
  cp.cb_eval = on_tensor;
  cp.cb_eval_user_data = NULL;
  struct llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) return 1;
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  for (int s = 0; s <= n_teach; s++) {
    g_step = s;
    g_seq = 0;
    struct llama_batch b = s == 0 ? llama_batch_get_one(prompt, n_prompt) : llama_batch_get_one(&teach[s - 1], 1);
    if (llama_decode(ctx, b)) {
      fprintf(stderr, "decode failed at step %d\n", s);
      return 1;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int j = 1; j < n_vocab; j++)
      if (logits[j] > logits[best]) best = j;
    double sum = 0;
    for (int j = 0; j < n_vocab; j++) sum += exp((double)logits[j] - logits[best]);
    if (greedy && s < n_teach) teach[s] = best;
    printf("step %d greedy %d logp %.6f\n", s, best, -log(sum));
    char path[1024];
    snprintf(path, sizeof path, "%s/logits_%02d.bin", g_out, s);
    FILE* f = fopen(path, "wb");
    if (f) {
      fwrite(logits, sizeof(float), (size_t)n_vocab, f);
      fclose(f);
    }
  }
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
