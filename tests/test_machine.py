"""vizkit.machine: the processor that made a number or an image is named, never left blank."""

from __future__ import annotations

from vizkit.machine import cpu_name, machine_name


def test_cpu_name_reads_the_model_name_and_falls_back(tmp_path):
    """The manifest and the rate benchmark name the processor: from cpuinfo where there is one,
    else from ``platform``, never empty."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000 @ 3.00GHz\nflags\t: a b\n")
    assert cpu_name(info) == "Example CPU 9000 @ 3.00GHz"
    assert cpu_name(tmp_path / "missing")  # platform's answer, or "unknown"
    info.write_text("model name\t:\n")
    assert cpu_name(info)


def test_machine_name_starts_with_the_cpu_and_names_torch_and_its_threads():
    import torch

    name = machine_name()
    assert name.startswith(cpu_name() + ", ") and ", torch " in name
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_name().endswith(", 1 thread")
    finally:
        torch.set_num_threads(before)
    assert machine_name().endswith(f", {before} thread" + ("s" if before != 1 else ""))
