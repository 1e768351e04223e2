"""The steps of ``tools/check_cuda.py``: mmrednet's CUDA kernels checked on the user's GPU.

The kernels are proven on the CPU in CI (compiled as the launcher compiles them,
run on the host under sanitizers in every dtype); what only a GPU can show is
checked here, one module a step:

* ``environment``: the device and versions, and every entry point compiled
  by CuPy for this device (registers, resident blocks, no spills);
* ``first_use``: the launcher's first-use self-check passes, and what it
  costs the first call;
* ``gpu_tests``: the repository's ``gpu`` tests and compute-sanitizer;
* ``bandwidth``: the benchmark's CUDA section beside the traffic model;
* ``launch_params``: the launch parameters swept for speed and correctness;
* ``fused``: the fused op's kernels: their random sweep, and their time against
  the composition (span convolution + involution kernels) on RedNet-50's shapes;
* ``steps``: running the steps and writing the report.

The random sweep is CI's (:mod:`mmrednet.testing.sweep`), with the GPU as executor.
"""
