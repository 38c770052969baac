// oneDNN convolutions as XLA FFI handlers: forward, input gradient, weight gradient.
//
// Built by fcn_jax/onednn.py (`python -m fcn_jax.onednn build`) against the oneDNN of the
// PyPI wheels onednn-cpu-gomp / onednn-devel-cpu-gomp and the FFI headers jaxlib ships.
//
// Layouts are XLA's (row-major): activations NHWC (N, H, W, C), kernels HWIO (KH, KW, C/G, O)
// where output channel o belongs to group o / (O/G), as in lax.conv_general_dilated with
// feature_group_count=G. Activations are read and written in place (oneDNN's nhwc
// kernels); the kernel, small, is reordered into the layout the chosen implementation
// wants. Primitives are cached by shape and settings; scratch memory is per thread.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Kind : int64_t { kForward = 0, kInputGrad = 1, kWeightGrad = 2 };

// Everything a primitive depends on: the direction, shapes, strides, paddings, dilations
// and groups.
struct Conv {
  int64_t n, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr, dh, dw, g;
  std::array<int64_t, 19> key(Kind kind) const {
    return {kind, n, h, w, c, o, kh, kw, oh, ow, sh, sw, pt, pb, pl, pr, dh, dw, g};
  }
};

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Activations(int64_t n, int64_t c, int64_t h, int64_t w) {
  return memory::desc({n, c, h, w}, dt::f32, tag::nhwc);
}

// The HWIO kernel as oneDNN's (O, I, KH, KW) or, grouped, (G, O/G, I/G, KH, KW).
memory::desc HwioKernel(const Conv& p) {
  int64_t ig = p.c / p.g, og = p.o / p.g;
  if (p.g == 1) {
    return memory::desc({p.o, p.c, p.kh, p.kw}, dt::f32,
                        memory::dims{1, p.o, p.kw * p.c * p.o, p.c * p.o});
  }
  return memory::desc({p.g, og, ig, p.kh, p.kw}, dt::f32,
                      memory::dims{og, 1, p.o, p.kw * ig * p.o, ig * p.o});
}

memory::desc AnyKernel(const Conv& p) {
  if (p.g == 1) return memory::desc({p.o, p.c, p.kh, p.kw}, dt::f32, tag::any);
  return memory::desc({p.g, p.o / p.g, p.c / p.g, p.kh, p.kw}, dt::f32, tag::any);
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Conv& p) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Activations(p.n, p.c, p.h, p.w), AnyKernel(p), Activations(p.n, p.o, p.oh, p.ow),
      {p.sh, p.sw}, {p.dh - 1, p.dw - 1}, {p.pt, p.pl}, {p.pb, p.pr}, attr);
}

// One cached computation: the convolution primitive, and the reorder between the HWIO
// kernel and the layout it uses (absent when they agree).
struct Entry {
  dnnl::primitive conv;
  memory::desc kernel;  // the layout the primitive reads or writes the kernel in
  bool reorder_kernel = false;
  dnnl::reorder reorder;
  memory::desc scratch;
  std::string impl;
};

std::shared_ptr<Entry> Build(const Conv& p, Kind kind) {
  auto e = std::make_shared<Entry>();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  memory::desc hwio = HwioKernel(p);
  auto forward = ForwardDesc(p);
  if (kind == kForward) {
    e->conv = dnnl::convolution_forward(forward);
    e->kernel = forward.weights_desc();
    e->scratch = forward.scratchpad_desc();
    e->impl = forward.impl_info_str();
  } else if (kind == kInputGrad) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Activations(p.n, p.c, p.h, p.w),
        AnyKernel(p), Activations(p.n, p.o, p.oh, p.ow), {p.sh, p.sw}, {p.dh - 1, p.dw - 1},
        {p.pt, p.pl}, {p.pb, p.pr}, forward, attr);
    e->conv = dnnl::convolution_backward_data(pd);
    e->kernel = pd.weights_desc();
    e->scratch = pd.scratchpad_desc();
    e->impl = pd.impl_info_str();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Activations(p.n, p.c, p.h, p.w),
        AnyKernel(p), Activations(p.n, p.o, p.oh, p.ow), {p.sh, p.sw}, {p.dh - 1, p.dw - 1},
        {p.pt, p.pl}, {p.pb, p.pr}, forward, attr);
    e->conv = dnnl::convolution_backward_weights(pd);
    e->kernel = pd.diff_weights_desc();
    e->scratch = pd.scratchpad_desc();
    e->impl = pd.impl_info_str();
  }
  e->reorder_kernel = e->kernel != hwio;
  if (e->reorder_kernel) {
    e->reorder = kind == kWeightGrad
                     ? dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), e->kernel, Engine(), hwio))
                     : dnnl::reorder(dnnl::reorder::primitive_desc(Engine(), hwio, Engine(), e->kernel));
  }
  return e;
}

std::shared_ptr<Entry> Cached(const Conv& p, Kind kind) {
  static std::mutex mutex;
  static std::map<std::array<int64_t, 19>, std::shared_ptr<Entry>> cache;
  auto key = p.key(kind);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto entry = Build(p, kind);
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, entry).first->second;
}

// Runs `kind` on raw NHWC / HWIO pointers; `x` is the input (forward, weight gradient) or the
// input gradient (written), `k` the kernel (read, or written for the weight gradient), `y` the
// output (written) or the output gradient (read).
void Run(const Conv& p, Kind kind, float* x, float* k, float* y) {
  auto e = Cached(p, kind);
  thread_local dnnl::stream stream(Engine());
  thread_local std::vector<char> scratch, kernel_buffer;
  if (scratch.size() < e->scratch.get_size()) scratch.resize(e->scratch.get_size());
  memory xm(Activations(p.n, p.c, p.h, p.w), Engine(), x);
  memory ym(Activations(p.n, p.o, p.oh, p.ow), Engine(), y);
  memory user_kernel(HwioKernel(p), Engine(), k);
  memory kernel = user_kernel;
  if (e->reorder_kernel) {
    if (kernel_buffer.size() < e->kernel.get_size()) kernel_buffer.resize(e->kernel.get_size());
    kernel = memory(e->kernel, Engine(), kernel_buffer.data());
  }
  memory scratch_memory(e->scratch, Engine(), scratch.data());
  if (kind == kForward) {
    if (e->reorder_kernel) e->reorder.execute(stream, user_kernel, kernel);
    e->conv.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, kernel},
                             {DNNL_ARG_DST, ym}, {DNNL_ARG_SCRATCHPAD, scratch_memory}});
  } else if (kind == kInputGrad) {
    if (e->reorder_kernel) e->reorder.execute(stream, user_kernel, kernel);
    e->conv.execute(stream, {{DNNL_ARG_DIFF_SRC, xm}, {DNNL_ARG_WEIGHTS, kernel},
                             {DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_SCRATCHPAD, scratch_memory}});
  } else {
    e->conv.execute(stream, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_WEIGHTS, kernel},
                             {DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_SCRATCHPAD, scratch_memory}});
    if (e->reorder_kernel) e->reorder.execute(stream, kernel, user_kernel);
  }
  stream.wait();
}

template <typename B>
std::array<int64_t, 4> Dims(const B& buffer) {
  auto d = buffer.dimensions();
  return {d[0], d[1], d[2], d[3]};
}

Conv Settings(const std::array<int64_t, 4>& x, const std::array<int64_t, 4>& k,
              const std::array<int64_t, 4>& y, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
              int64_t pl, int64_t pr, int64_t dh, int64_t dw, int64_t g) {
  return {x[0], x[1], x[2], x[3], y[3], k[0], k[1], y[1], y[2],
          sh,   sw,   pt,   pb,   pl,   pr,   dh,   dw,   g};
}

ffi::Error Guard(const Conv& p, Kind kind, float* x, float* k, float* y) {
  try {
    Run(p, kind, x, k, y);
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32, 4> x, ffi::Buffer<ffi::F32, 4> k,
                   ffi::ResultBuffer<ffi::F32, 4> y, int64_t sh, int64_t sw, int64_t pt,
                   int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw, int64_t g) {
  Conv p = Settings(Dims(x), Dims(k), Dims(*y), sh, sw, pt, pb, pl, pr, dh, dw, g);
  return Guard(p, kForward, x.typed_data(), k.typed_data(), y->typed_data());
}

ffi::Error InputGrad(ffi::Buffer<ffi::F32, 4> dy, ffi::Buffer<ffi::F32, 4> k,
                     ffi::ResultBuffer<ffi::F32, 4> dx, int64_t sh, int64_t sw, int64_t pt,
                     int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw, int64_t g) {
  Conv p = Settings(Dims(*dx), Dims(k), Dims(dy), sh, sw, pt, pb, pl, pr, dh, dw, g);
  return Guard(p, kInputGrad, dx->typed_data(), k.typed_data(), dy.typed_data());
}

ffi::Error WeightGrad(ffi::Buffer<ffi::F32, 4> x, ffi::Buffer<ffi::F32, 4> dy,
                      ffi::ResultBuffer<ffi::F32, 4> dk, int64_t sh, int64_t sw, int64_t pt,
                      int64_t pb, int64_t pl, int64_t pr, int64_t dh, int64_t dw, int64_t g) {
  Conv p = Settings(Dims(x), Dims(*dk), Dims(dy), sh, sw, pt, pb, pl, pr, dh, dw, g);
  return Guard(p, kWeightGrad, x.typed_data(), dk->typed_data(), dy.typed_data());
}

template <typename Binding>
auto WithSettings(Binding binding) {
  return std::move(binding).template Attr<int64_t>("stride_h")
      .template Attr<int64_t>("stride_w")
      .template Attr<int64_t>("pad_top")
      .template Attr<int64_t>("pad_bottom")
      .template Attr<int64_t>("pad_left")
      .template Attr<int64_t>("pad_right")
      .template Attr<int64_t>("dilation_h")
      .template Attr<int64_t>("dilation_w")
      .template Attr<int64_t>("groups");
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnOnednnConvForward, Forward,
                              WithSettings(ffi::Ffi::Bind()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Ret<ffi::Buffer<ffi::F32, 4>>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnOnednnConvInputGrad, InputGrad,
                              WithSettings(ffi::Ffi::Bind()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Ret<ffi::Buffer<ffi::F32, 4>>()));

XLA_FFI_DEFINE_HANDLER_SYMBOL(FcnOnednnConvWeightGrad, WeightGrad,
                              WithSettings(ffi::Ffi::Bind()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Arg<ffi::Buffer<ffi::F32, 4>>()
                                               .Ret<ffi::Buffer<ffi::F32, 4>>()));

// The implementation oneDNN chose for a convolution of these settings and direction (s[18]) (for the
// benchmarks' notes): C string owned by the library.
extern "C" const char* fcn_onednn_impl(const int64_t* s) {
  static thread_local std::string impl;
  Conv p{s[0], s[1], s[2],  s[3],  s[4],  s[5],  s[6],  s[7],  s[8],
         s[9], s[10], s[11], s[12], s[13], s[14], s[15], s[16], s[17]};
  try {
    impl = Cached(p, static_cast<Kind>(s[18]))->impl;
  } catch (const dnnl::error& e) {
    impl = std::string("error: ") + e.what();
  }
  return impl.c_str();
}
