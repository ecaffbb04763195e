# Copyright 2026 The msa_hf authors. Licensed under the Apache License, Version 2.0.
"""`msa-hf push` (a trained run, its adapter, dataset and Space), `msa-hf push-space` (the demo, published)
and `msa-hf demo` (the same page, served on this machine)."""

from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register these commands on `msa-hf`'s subcommands."""
    push = commands.add_parser(
        "push", help="Publish a trained run: full model + processor + card, and the adapter."
    )
    push.add_argument("run_dir", metavar="run", help="train.py output directory (with model/)")
    push.add_argument("repo_id", help="e.g. org/msa-btcv; the adapter goes to <repo_id>-adapter")
    push.add_argument("--adapter-repo-id", default=None)
    push.add_argument("--private", action="store_true")
    push.add_argument("--revision", default=None, help="branch to push to (created when missing)")
    push.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    push.add_argument(
        "--dataset",
        default=None,
        help="prepared dataset directory to publish too; the model card then links it",
    )
    push.add_argument(
        "--dataset-repo-id",
        default=None,
        help="dataset repo for --dataset (default: <org>/<dataset folder name>)",
    )
    push.add_argument("--space-repo-id", default=None, help="also create a Gradio Space serving the model")
    push.add_argument(
        "--space-hardware", default=None, metavar="FLAVOR",
        help="with --space-repo-id: the Space's hardware, as push-space's --hardware (zero-a10g: ZeroGPU)",
    )  # fmt: skip
    push.add_argument(
        "--token", default=None, help="Hub token with write access (default: HF_TOKEN or `hf auth login`'s)"
    )
    push.set_defaults(run=_push)

    space = commands.add_parser(
        "push-space",
        help="Publish the Gradio demo Space serving a model, or a base with several task adapters.",
    )
    space.add_argument("space_repo_id", help="e.g. org/msa-demo")
    space.add_argument(
        "model", help="the model repo it serves (with --adapter: the base they were trained on)"
    )
    space.add_argument("--adapter", action="append", default=[], metavar="NAME=REPO",
                       help="a task adapter (adapter-only repo) offered in the demo's menu; repeat for more")  # fmt: skip
    space.add_argument(
        "--space-folder", default=None,
        help="a Space folder of your own to publish (its app.py and files) instead of msa_hf's demo page",
    )  # fmt: skip
    space.add_argument(
        "--hardware", default=None, metavar="FLAVOR",
        help="the hardware the Space is asked to run on after the upload (zero-a10g: ZeroGPU, t4-small, ...; "
        "needs a PRO account or a payment method), also its card's suggested_hardware; default: the Space's own",
    )  # fmt: skip
    space.add_argument("--dry-run", action="store_true", help="list the files, upload nothing")
    space.add_argument(
        "--token", default=None, help="Hub token with write access (default: HF_TOKEN or `hf auth login`'s)"
    )
    space.set_defaults(run=_push_space)

    demo = commands.add_parser(
        "demo",
        help="Serve the demo page (the one a pushed Space runs) on this machine, for a model of yours.",
    )
    demo.add_argument(
        "model", nargs="?", default=None,
        help="model folder or Hub id (with --adapter: the base they were trained on); default: MSA_MODEL, "
        "else the shipped small base",
    )  # fmt: skip
    demo.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH",
                      help="a task adapter (folder or adapter-only repo) offered in the page's menu; repeat for more")  # fmt: skip
    demo.add_argument("--port", type=int, default=None, help="default: 7860, or the next free port")
    demo.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1, this machine)")
    demo.add_argument("--share", action="store_true", help="also serve a temporary public link (Gradio's)")
    demo.add_argument(
        "--device", default=None,
        help="cpu, cuda or cuda:N (default: MSA_DEVICE, else cuda when a GPU is visible, else cpu)",
    )  # fmt: skip
    demo.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16"],
        help="image encoder precision (default: MSA_DTYPE, else bfloat16 on CUDA, float32 on the CPU; "
        "bfloat16 also pays on a CPU that computes it natively, Intel AMX or AVX512-BF16, for a ViT-B or larger)",
    )  # fmt: skip
    demo.set_defaults(run=_demo)


def _push(args: argparse.Namespace) -> int:
    from msa_hf.hub.push import dataset_push_plan, default_dataset_repo_id, push_dataset, push_run

    if args.dataset_repo_id and not args.dataset:
        raise ValueError(
            "--dataset-repo-id names where --dataset goes; pass --dataset <prepared dataset directory>."
        )
    if args.space_hardware is not None:  # refused before anything is uploaded
        from msa_hf.hub.push import check_space_hardware

        if not args.space_repo_id:
            raise ValueError(
                "--space-hardware is the hardware of the Space --space-repo-id creates; pass both."
            )
        check_space_hardware(args.space_hardware, "--space-hardware")
    dataset_repo_id = None
    if args.dataset:
        dataset_repo_id = args.dataset_repo_id or default_dataset_repo_id(args.repo_id, args.dataset)
        dataset_plan = dataset_push_plan(args.dataset, dataset_repo_id, private=args.private)  # checked first
    plan = push_run(
        args.run_dir, args.repo_id, adapter_repo_id=args.adapter_repo_id, private=args.private,
        revision=args.revision, dry_run=args.dry_run, dataset_repo_id=dataset_repo_id, token=args.token,
    )  # fmt: skip
    print(("would upload:\n" if args.dry_run else "uploaded:\n") + plan.describe())
    if args.dataset:
        if args.dry_run:
            print(f"dataset (repo type dataset):\n{dataset_plan.describe()}")
        else:
            print(
                f"dataset: {push_dataset(args.dataset, dataset_repo_id, private=args.private, token=args.token)}"
            )
    if args.space_repo_id:
        from msa_hf.hub.push import push_space

        hardware = args.space_hardware
        if args.dry_run:
            print(
                f"would create Space {args.space_repo_id} serving {args.repo_id}"
                + (f" on {hardware}" if hardware else "")
            )
        else:
            space = push_space(args.space_repo_id, args.repo_id, token=args.token, hardware=hardware)
            print(f"space: {space}" + (f" (hardware {hardware} requested)" if hardware else ""))
    return 0


def _task_adapters(entries: list[str]) -> dict[str, str]:
    """`--adapter NAME=REPO` entries as `{name: repo or folder}`, in their order."""
    adapters = {}
    for entry in entries:
        name, _, repo = entry.partition("=")
        if not name.strip() or not repo.strip():
            raise ValueError(f"--adapter {entry!r}: expected NAME=REPO, e.g. liver=org/msa-liver-adapter.")
        adapters[name.strip()] = repo.strip()
    return adapters


def _push_space(args: argparse.Namespace) -> int:
    from msa_hf.hub.push import push_space

    adapters = _task_adapters(args.adapter)
    result = push_space(
        args.space_repo_id, args.model, space_folder=args.space_folder, adapters=adapters or None,
        dry_run=args.dry_run, token=args.token, hardware=args.hardware,
    )  # fmt: skip
    print(("would upload to " + args.space_repo_id + ":\n" if args.dry_run else "space: ") + result)
    if args.hardware and not args.dry_run:
        print(f"hardware: {args.hardware} requested; the Space builds and starts on it")
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from msa_hf.demo.app import serve
    except ImportError as error:
        raise ValueError(f"the demo needs the demo extra: pip install 'msa_hf[demo]' ({error}).") from None
    adapters = _task_adapters(args.adapter) or None
    options = {"server_port": args.port, "server_name": args.host, "share": args.share}
    serve(
        model=args.model, adapters=adapters, device=args.device, dtype=args.dtype,
        **{k: v for k, v in options.items() if v is not None},
    )  # fmt: skip
    return 0
