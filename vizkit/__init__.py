"""vizkit: see what the units of a neural network respond to and what they are invariant to.

The public API lives here; plugins (built-in or third-party) use only these names. Attributes are
imported on first use so ``import vizkit`` stays fast and loads no plugin.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # Python API
    "load": "vizkit.api",
    "load_module": "vizkit.api",
    "load_dataset": "vizkit.api",
    "run_probe": "vizkit.api",
    "list_probes": "vizkit.api",
    "list_models": "vizkit.api",
    "list_datasets": "vizkit.api",
    "compatible_probes": "vizkit.api",
    "wrap": "vizkit.wrapping",
    "WrappedModel": "vizkit.wrapping",
    "from_sklearn_rbm": "vizkit.adapters.sklearn_rbm",
    "save_sklearn_rbm": "vizkit.adapters.sklearn_rbm",
    # writing plugins
    "hookimpl": "vizkit.hookspecs",
    "LazyModel": "vizkit.registry",
    "Probe": "vizkit.probe",
    "ProbeContext": "vizkit.probe",
    "Result": "vizkit.probe",
    "Video": "vizkit.probe",
    "UnitView": "vizkit.probe",
    "Option": "vizkit.options",
    "LayerInfo": "vizkit.model",
    "Weights": "vizkit.model",
    "ProbeModel": "vizkit.model",
    "WeightsModel": "vizkit.model",
    "ReconstructModel": "vizkit.model",
    "ClampedSampleModel": "vizkit.models.rbm.interfaces",
    "SamplingModel": "vizkit.models.rbm.interfaces",
    "TemplateModel": "vizkit.models.capsule.interfaces",
    "EpochSnapshotModel": "vizkit.models.registration",
    "Capability": "vizkit.capabilities",
    "VizModel": "vizkit.model",
    "unit_activations": "vizkit.model",
    "unit_axis": "vizkit.model",
    "model_dtype": "vizkit.model",
    "torch_module": "vizkit.model",
    "parse_position": "vizkit.model",
    "input_weight_layers": "vizkit.model",
    "paired_unit_activations": "vizkit.model",
    "layer_activations": "vizkit.model",
    "ReferenceModel": "vizkit.models.base",
    "DatasetSpec": "vizkit.datasets",
    "VizDataModule": "vizkit.datasets.base",
    "capabilities": "vizkit.capabilities",
    "figure": "vizkit.figure",
    "optim": "vizkit.optim",
    "optvis": "vizkit.optvis",
    "sphere": "vizkit.sphere",
    "probe_inputs": "vizkit.probe_inputs",
    "class_names": "vizkit.class_names",
    "deconvnet": "vizkit.deconvnet",
    "receptive_fields": "vizkit.receptive_fields",
    "image_transforms": "vizkit.image_transforms",
    "papers": "vizkit.papers",
    "mixtures": "vizkit.mixtures",
    "transformation_sets": "vizkit.image_transforms",
    "transform_images": "vizkit.image_transforms",
    # errors
    "VizkitError": "vizkit.errors",
    "UsageError": "vizkit.errors",
    "UnknownNameError": "vizkit.errors",
    "OptionError": "vizkit.errors",
    "UnitError": "vizkit.errors",
    "CapabilityError": "vizkit.errors",
    "CheckpointError": "vizkit.errors",
    "DataError": "vizkit.errors",
    "OutputError": "vizkit.errors",
    "WriteError": "vizkit.errors",
    "PluginError": "vizkit.errors",
    "ProbeFailure": "vizkit.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


#: Modules exported as modules (``from vizkit import figure``), not as an attribute of one.
_MODULES = {"capabilities", "figure", "optim", "optvis", "sphere", "probe_inputs", "class_names", "deconvnet", "receptive_fields",
            "image_transforms", "papers", "mixtures"}

#: Earlier names of public modules, kept so third-party plugins written against them still import.
_RENAMED = {"render": "figure", "datasource": "probe_inputs", "transforms": "image_transforms"}


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        return __getattr__(_RENAMED[name])
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vizkit' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name in _MODULES else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
