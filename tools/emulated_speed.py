"""Per-inference time of LiteRT's aarch64 kernels on the emulated device (qemu-user), per core and
resolver: what docs/device.md's emulated-loop table states.

    python tools/emulated_speed.py [-m MODEL] [--cores cortex-a72,cortex-a76] [--runs 5]
                                   [--resolvers ref,builtin,default] [--litert VERSION] [--json OUT]

Needs ``npmobilebert device setup`` first.  Each (core, resolver) runs in a fresh emulated Python
(this file again, with ``--inside``): the model is opened, one warm-up inference made, then
``--runs`` timed ones on seeded random inputs.  Reported per inference: wall time and the CPU
time of the emulator process (``time.process_time``); on a shared machine the CPU time is the
steadier number (the wall time grows with the load), and both are emulated time, not a board's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

RESOLVER_TYPES = {"ref": "BUILTIN_REF", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "default": "AUTO"}


def inside(model_path: str, resolver: str, runs: int) -> None:
    """In the emulator: open, warm up, time; one JSON line on stdout."""
    t0 = time.perf_counter()
    import numpy as np
    from ai_edge_litert import interpreter as tfl

    from npmobilebert.inputs import InputMaker
    from npmobilebert.model import load_model

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    it = tfl.Interpreter(model_path=model_path, num_threads=1,
                         experimental_op_resolver_type=getattr(tfl.OpResolverType, RESOLVER_TYPES[resolver]))
    it.allocate_tensors()
    open_s = time.perf_counter() - t0
    maker = InputMaker(load_model(model_path))
    rng = np.random.default_rng(0)
    details = it.get_input_details()
    names = [maker.model.tensors[i].name for i in maker.model.inputs]
    by_name = {d["name"]: d["index"] for d in details}

    def invoke():
        for name, array in zip(names, maker.random(rng).arrays):
            it.set_tensor(by_name[name], array)
        it.invoke()

    invoke()                                                  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        invoke()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    print(json.dumps({"import_s": import_s, "open_s": open_s, "wall_s": sorted(wall)[len(wall) // 2],
                      "cpu_s": sorted(cpu)[len(cpu) // 2], "runs": runs}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default=None, help="default: the shipped model")
    ap.add_argument("--cores", default="cortex-a72,cortex-a76")
    ap.add_argument("--resolvers", default="ref,builtin,default")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--litert", default=None, help="the LiteRT version set up (default: as dump --device)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--inside", nargs=3, metavar=("MODEL", "RESOLVER", "RUNS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside(args.inside[0], args.inside[1], int(args.inside[2]))
        return

    from npmobilebert.cli import default_model_path
    from npmobilebert.device import device_command

    model = os.path.abspath(args.model or str(default_model_path()))
    rows = []
    for core in args.cores.split(","):
        for resolver in args.resolvers.split(","):
            cmd, env, version = device_command("aarch64", core, args.litert,
                                               [os.path.abspath(__file__), "--inside", model, resolver,
                                                str(args.runs)])
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            total = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"{core} {resolver}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result.update(core=core, resolver=resolver, litert=version, process_s=total)
            rows.append(result)
            print(f"{core:<12} {resolver:<8} LiteRT {version}: {result['wall_s']:.2f} s wall, "
                  f"{result['cpu_s']:.2f} s CPU per inference; start-up {result['import_s']:.1f} s imports + "
                  f"{result['open_s']:.1f} s open; {total:.1f} s in all", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": os.path.basename(model), "load": os.getloadavg(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
