from __future__ import annotations

import subprocess
import sys


def test_core_plugin_machinery_and_training_params_import_no_torch():
    code = ("import sys\nimport synthforge\nfrom synthforge.nn import TrainingParams\n"
            "from synthforge.plugins import get_plugin_manager\nget_plugin_manager(entry_points=False).generators()\n"
            "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
