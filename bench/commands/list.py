"""`python -m bench list`: every registered model, with how it is selected."""


def add_parser(sub) -> None:
    parser = sub.add_parser("list", help="list the registered models")
    parser.add_argument("--models", nargs="*", help="glob(s) over family/name, e.g. 'neural/*'")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from bench.registry import select

    specs = select(args.models)
    width = max(len(s.key) for s in specs)
    for spec in specs:
        print(f"{spec.key:<{width}}  {spec.description}")
    print(f"\n{len(specs)} models")
    return 0
