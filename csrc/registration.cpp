// The one TORCH_LIBRARY of the project: every op's schema, forward and backward.
// Implementations live in cpu/<op>.cpp and cuda/<op>.cu (TORCH_LIBRARY_IMPL per backend);
// fake (meta) and autograd registrations are in lsswgan_core/ops/<op>.py.
// The pybind11 module _C carries build facts only.
#include <ATen/Parallel.h>
#include <torch/extension.h>
#include <torch/library.h>
#include <torch/version.h>

#ifndef LSS_VERSION
#define LSS_VERSION "0+unknown"
#endif

TORCH_LIBRARY(lsscore, m) {
  // paint: positions (N,3) [Mpc/h], weights (N,) or None -> grid (n,n,n); order 1|2|3 = ngp|cic|tsc.
  m.def("paint(Tensor positions, Tensor? weights, int n, float box_size, int order) -> Tensor");
  // paint_into: accumulates into an existing (n,n,n) grid (the out= path; no autograd).
  m.def(
      "paint_into(Tensor(a!) grid, Tensor positions, Tensor? weights, float box_size, "
      "int order) -> ()");
  // readout: the adjoint of paint, field (n,n,n) interpolated at positions -> (N,).
  m.def("readout(Tensor field, Tensor positions, float box_size, int order) -> Tensor");
  // readout_gradient: weights[p] * grad_x (interpolated field)(x_p) -> (N,3). The backward of
  // paint (to positions) and of readout (to positions).
  m.def(
      "readout_gradient(Tensor field, Tensor positions, Tensor? weights, float box_size, "
      "int order) -> Tensor");

  // find_peaks: field (..., n, n, n) -> bool mask of strict maxima over (2r+1)^3 neighbourhoods.
  m.def("find_peaks(Tensor field, int radius, bool periodic) -> Tensor");

  // bin_power: spectrum (..., M, 2) (complex as real pairs), index (M,) int32, weight (M,) or
  // None -> (..., nbins): out[..., b] = sum_{index[m] == b} weight[m] |spectrum[..., m]|^2;
  // entries of index outside [0, nbins) are left out. The binning in power_spectrum.
  m.def("bin_power(Tensor spectrum, Tensor index, Tensor? weight, int nbins) -> Tensor");
  m.def("bin_power_backward(Tensor grad, Tensor spectrum, Tensor index, Tensor? weight) -> Tensor");

  // soft_histogram: values (..., M), weights (..., M) or None -> (..., nbins), triangle kernel
  // on [lo, hi]; the backward returns (grad_values, grad_weights), each only where output_mask
  // asks for it (an empty tensor otherwise).
  m.def("soft_histogram(Tensor values, Tensor? weights, float lo, float hi, int nbins) -> Tensor");
  m.def(
      "soft_histogram_backward(Tensor grad, Tensor values, Tensor? weights, float lo, float hi, "
      "int nbins, bool[2] output_mask) -> (Tensor, Tensor)");
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "lsscore compiled kernels; the ops live under torch.ops.lsscore";
  m.attr("version") = LSS_VERSION;
  m.attr("torch_version") = TORCH_VERSION;
#ifdef LSS_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
#if AT_PARALLEL_OPENMP
  m.attr("with_openmp") = true;
#else
  m.attr("with_openmp") = false;
#endif
}
