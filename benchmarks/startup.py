"""Start-up cost of the CLI: median wall time of `studiodoctor --help` and `studiodoctor list` next to
`python -c pass`, and which heavy SDKs each command imported.  Run: .venv/bin/python benchmarks/startup.py"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 11
HEAVY = ("kubernetes", "google.cloud.storage", "cloudflare", "celery", "redis", "psycopg", "dns.resolver", "httpx")
SCRIPT = Path(sys.executable).with_name("studiodoctor")


def median_ms(cmd):
    subprocess.run(cmd, capture_output=True)  # warm the page cache
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def heavy_imports(args):
    code = ("import sys; from studiodoctor.cli import main; main(%r); "
            "print('HEAVY=' + ','.join(m for m in %r if m in sys.modules))" % (args, HEAVY))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    return next((line[6:] for line in out.splitlines() if line.startswith("HEAVY=")), "?")


def main():
    from vs_manual import compile_bytecode

    compile_bytecode()  # as an installed doctor has it (see vs_manual.compile_bytecode)
    print(f"median of {RUNS} runs on this machine, bytecode compiled")
    base = median_ms([sys.executable, "-c", "pass"])
    print(f"  python -c pass          {base:7.1f} ms")
    for args in (["--help"], ["list"], ["symptoms"]):
        ms = median_ms([str(SCRIPT), *args])
        heavy = heavy_imports(args) or "none"
        print(f"  studiodoctor {' '.join(args):<10} {ms:7.1f} ms   heavy SDKs imported: {heavy}")


if __name__ == "__main__":
    main()
