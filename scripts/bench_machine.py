"""The CPU a benchmark ran on: every benchmark prints it, since ratios depend on it."""


def cpu_model_and_isa():
    """(CPU model name, its widest vector ISA) from /proc/cpuinfo; "unknown" where absent."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = ("avx512+amx" if "amx_tile" in flags else "avx512" if "avx512f" in flags
           else "avx2+fma" if {"avx2", "fma"} <= flags else "avx2" if "avx2" in flags else "older than avx2")
    return model, isa
