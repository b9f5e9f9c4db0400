"""Every Triton kernel compiles for an H100 (sm_90), checked on a machine without a GPU (compile_for_gpu.py):
the interpreter tests run the kernels' logic, this one catches code that only the GPU compiler rejects."""
import json

from helpers import run

KERNELS = {'_reduce_kv_kernel', 'finish_pairs_kernel', '_output_kernel', '_grad_q_kernel', '_grad_kv_kernel',
           '_tap_sum_kernel', '_dwconv_grad_weight_kernel', '_scan_forward_kernel',
           '_scan_backward_kernel', '_chunk_state_kernel', '_state_pass_kernel', '_chunk_output_kernel',
           '_chunk_backward_kernel', '_scan_finish_kernel',
           '_layer_norm_fwd_kernel', '_layer_norm_bwd_kernel',
           '_silu_gate_kernel', '_silu_gate_backward_kernel', '_residual_add_kernel', '_drop_path_grad_kernel',
           '_gelu_kernel', '_finish_column_sums_kernel', '_column_sums_kernel', '_pack_kernel',
           '_grid_to_sequences_kernel',
           '_sequences_to_grid_kernel'}


def test_all_kernels_compile_for_sm90():
    result = run(['python', 'tests/test_kernels/compile_for_gpu.py'], env={'TRITON_INTERPRET': '0'}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
    assert {k['kernel'] for k in compiled} == KERNELS
    assert all(k['registers'] is None or 0 < k['registers'] <= 255 for k in compiled)
    # the stage knobs reach the chunked passes: pipelined, they buffer their loop's loads in shared memory
    pipelined = {k['kernel'] for k in compiled if k['shared_memory'] >= 16384}
    assert {'_dwconv_grad_weight_kernel', '_layer_norm_bwd_kernel', '_column_sums_kernel'} <= pipelined
