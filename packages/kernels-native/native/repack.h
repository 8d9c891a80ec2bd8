// Weight repacking at load: Q4_0 / Q8_0 rows interleaved 8 at a time, so one 256-bit integer dot
// computes a partial sum for 8 rows at once (lane i = row i) and a block's 8 scales load together.
//
// Layout of a repacked tensor of `rows` x `cols` (same total size as the file layout):
//   for each group g of 8 rows (rows / 8 groups), for each block b of 32 columns:
//     uint16 d[8]                  f16 scales of rows 8g..8g+7
//     Q4_0: 4 chunks c, each 8 rows x 4 bytes: bytes 4c..4c+3 of row i's 16 quant bytes
//           (low nibbles: elements 4c..4c+3, high nibbles: elements 16+4c..16+4c+3)   = 144 bytes
//     Q8_0: 8 chunks c, each 8 rows x 4 bytes: quants 4c..4c+3 of row i             = 272 bytes
//   then the last rows % 8 rows in the file layout.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ryz {

/** Rows per interleaved group. */
constexpr int kPackRows = 8;

/** True when `fmt` has a repacked layout. */
bool repack_supported(int fmt);
/** Writes the repacked layout of `src` (file layout, rows x cols) to `dst` (same byte size). */
void repack_rows(int fmt, const uint8_t* src, int64_t rows, int64_t cols, uint8_t* dst);

}  // namespace ryz
