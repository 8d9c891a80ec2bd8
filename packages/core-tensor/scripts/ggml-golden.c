// Runs ggml's own reference quantizers (from node-llama-cpp's prebuilt libggml-base.so) on a float
// file and writes the bytes, so core-tensor's golden hashes can be regenerated and checked:
//   cc -O1 -o /tmp/ggml-golden ggml-golden.c -ldl
//   /tmp/ggml-golden LIB/libggml-base.so TYPE IN.f32 OUT.bin     (TYPE: q4_K, tq2_0, ...)
// The output is the quantized bytes followed by the dequantized floats.
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*quant_fn)(const float*, void*, int64_t);
typedef void (*dequant_fn)(const void*, float*, int64_t);

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s libggml-base.so TYPE IN.f32 OUT.bin\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  static const struct { const char* name; int block; int size; } types[] = {
      {"q4_0", 32, 18},   {"q4_1", 32, 20},   {"q5_0", 32, 22},   {"q8_0", 32, 34},   {"q8_1", 32, 36},
      {"q2_K", 256, 84},  {"q3_K", 256, 110}, {"q4_K", 256, 144}, {"q5_K", 256, 176}, {"q6_K", 256, 210},
      {"q8_K", 256, 292}, {"tq1_0", 256, 54}, {"tq2_0", 256, 66},
  };
  int t = -1;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    const char* a = types[i].name;
    const char* b = argv[2];
    while (*a && *a == *b) a++, b++;
    if (*a == 0 && *b == 0) t = (int)i;
  }
  if (t < 0) {
    fprintf(stderr, "unknown type %s\n", argv[2]);
    return 2;
  }
  char qname[64], dname[64];
  snprintf(qname, sizeof qname, "quantize_row_%s_ref", types[t].name);
  snprintf(dname, sizeof dname, "dequantize_row_%s", types[t].name);
  quant_fn q = (quant_fn)dlsym(lib, qname);
  dequant_fn dq = (dequant_fn)dlsym(lib, dname);
  if (!q) {
    fprintf(stderr, "missing %s\n", qname);
    return 1;
  }
  FILE* in = fopen(argv[3], "rb");
  if (!in) return 1;
  fseek(in, 0, SEEK_END);
  const long bytes = ftell(in);
  fseek(in, 0, SEEK_SET);
  const int64_t n = bytes / 4;
  float* x = malloc((size_t)bytes);
  if (fread(x, 4, (size_t)n, in) != (size_t)n) return 1;
  fclose(in);
  const size_t qbytes = (size_t)(n / types[t].block) * (size_t)types[t].size;
  uint8_t* y = calloc(qbytes, 1);
  q(x, y, n);
  float* back = calloc((size_t)n, 4);
  if (dq) dq(y, back, n);
  FILE* out = fopen(argv[4], "wb");
  fwrite(y, 1, qbytes, out);
  if (dq) fwrite(back, 4, (size_t)n, out);
  fclose(out);
  return 0;
}
