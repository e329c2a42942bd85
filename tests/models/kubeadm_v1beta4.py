"""Strict field-by-field model of kubeadm.k8s.io/v1beta4 (kubeadm 1.36), of the KubeletConfiguration
fields kubeadm passes through, and of EncryptionConfiguration / audit Policy.

The model lives in the kubeadm contract double (tests/doubles/kubeadm): the double must be ONE
self-contained file on the lab VMs and validates configs with exactly this model. This module loads
that file (it has no .py suffix) and re-exports the model, so the offline render tests and the
double can never disagree.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

DOUBLE = Path(__file__).resolve().parent.parent / "doubles" / "kubeadm"
_NAME = "kubestrap_tests_kubeadm_double"


def _load() -> Any:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    loader = importlib.machinery.SourceFileLoader(_NAME, str(DOUBLE))
    spec = importlib.util.spec_from_loader(_NAME, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    loader.exec_module(module)
    return module


double = _load()

KINDS = double.KINDS
REMOVED = double.REMOVED
REQUIRED = double.REQUIRED
DURATION = double.DURATION
Str, Int, Bool, Duration, Enum, ListOf, MapOf, AnyValue = (
    double.Str, double.Int, double.Bool, double.Duration, double.Enum, double.ListOf, double.MapOf, double.AnyValue,
)  # fmt: skip
INIT, CLUSTER, JOIN, RESET, KUBELET = double.INIT, double.CLUSTER, double.JOIN, double.RESET, double.KUBELET
ENCRYPTION, AUDIT_POLICY = double.ENCRYPTION, double.AUDIT_POLICY
validate_document = double.validate_document
validate_documents = double.validate_documents

__all__ = [
    "AUDIT_POLICY", "CLUSTER", "DURATION", "ENCRYPTION", "INIT", "JOIN", "KINDS", "KUBELET", "REMOVED", "REQUIRED",
    "RESET", "AnyValue", "Bool", "Duration", "Enum", "Int", "ListOf", "MapOf", "Str", "double", "validate_document",
    "validate_documents",
]  # fmt: skip
