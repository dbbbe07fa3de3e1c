"""lm-eval's own command line, with quantgate's model registered first.

    python -m quantgate.backends.lm_eval_cli run --model quantgate-llama-cpp \\
        --model_args model_path=/path/model.gguf,n_ctx=2048 \\
        --tasks hellaswag_smoke --include_path fixtures/tasks

Everything after the module name is lm-eval's CLI, unchanged.
"""

from __future__ import annotations

import quantgate.backends.lm_eval_model  # noqa: F401  (registers quantgate-llama-cpp)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
