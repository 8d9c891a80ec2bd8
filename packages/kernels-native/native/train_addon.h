// Node-API class TrainEngine (training kernels over their own thread pool); see train_addon.cpp.
#pragma once

#include <napi.h>

namespace ryz {
/** The `TrainEngine` constructor exported by the addon. */
Napi::Function define_train_engine(Napi::Env env);
}  // namespace ryz
