// Weight repacking at load: a registry of packed layouts, one entry per format (repack.cpp).
//
// Q4_0 / Q8_0: rows interleaved 8 at a time, so one 256-bit integer dot computes a partial sum for 8
// rows at once (lane i = row i) and a block's 8 scales load together. Layout of a repacked tensor
// of `rows` x `cols` (same total size as the file layout):
//   for each group g of 8 rows (rows / 8 groups), for each block b of 32 columns:
//     uint16 d[8]                  f16 scales of rows 8g..8g+7
//     Q4_0: 4 chunks c, each 8 rows x 4 bytes: bytes 4c..4c+3 of row i's 16 quant bytes
//           (low nibbles: elements 4c..4c+3, high nibbles: elements 16+4c..16+4c+3)   = 144 bytes
//     Q8_0: 8 chunks c, each 8 rows x 4 bytes: quants 4c..4c+3 of row i             = 272 bytes
//   then the last rows % 8 rows in the file layout.
//
// TQ1_0 / TQ2_0: the lookup-table layout of ternary_lut.h (tiles of 32 rows, 1.8125 bits per weight),
// read by the LUT kernel instead of the file layout.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ryz {

/** Rows per interleaved group (Q4_0 / Q8_0). */
constexpr int kPackRows = 8;

/** True when `fmt` has a repacked layout. */
bool repack_supported(int fmt);
/** Bytes of the repacked layout of a rows x cols matrix of a supported format. */
size_t repack_bytes(int fmt, int64_t rows, int64_t cols);
/**
 * False when this matrix's values cannot be represented in the packed layout (a TQ2_0 matrix
 * holding the code 3, i.e. weight +2); it then stays in the file layout.
 */
bool repack_accepts(int fmt, const uint8_t* src, int64_t rows, int64_t cols);
/** Writes the repacked layout of `src` (file layout, rows x cols) to `dst` (repack_bytes). */
void repack_rows(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);

}  // namespace ryz
