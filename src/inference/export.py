"""Export a trained model's LSTM to ONNX.

    python -m src.inference.export --model-dir models

Writes ``models/model.onnx`` (dynamic batch and length axes; see
``src/inference/onnx_model.py`` for its inputs and outputs) and, where onnxruntime
is installed, ``models/model.int8.onnx``, the same graph with int8 weights.
``predict``, ``evaluate`` and ``SentimentPredictor`` then run the LSTM with ONNX
Runtime on a CPU. A training run exports them by itself when the ``onnx`` package
is installed.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from src.exceptions import PipelineError
from src.inference.onnx_model import export_onnx
from src.utils.cli import OneLineParser, fail


def main(argv: Optional[List[str]] = None, prog: str = "python -m src.inference.export") -> int:
    parser = OneLineParser(prog=prog, description="Export a model's LSTM to ONNX.")
    parser.add_argument("--model-dir", required=True, help="model directory written by training (--output-dir)")
    args = parser.parse_args(argv)
    try:
        paths = export_onnx(args.model_dir)
    except ImportError:
        return fail("exporting needs the onnx package: pip install onnx onnxruntime")
    except PipelineError as err:
        return fail(str(err))
    except OSError as err:
        return fail(f"could not write the ONNX files into {args.model_dir} ({err.strerror or err}); make the "
                    "folder writable, or copy the model directory somewhere writable and export that")
    print(f"wrote {', '.join(map(str, paths))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
