"""`python -m bench list`: every registered model, with how it is selected; with
`--settings MODEL`, every setting `--set` can give that model."""


def add_parser(sub) -> None:
    parser = sub.add_parser("list", help="list the registered models")
    parser.add_argument("--models", nargs="*", help="glob(s) over family/name, e.g. 'neural/*'")
    parser.add_argument("--settings", metavar="MODEL",
                        help="every setting --set can give MODEL, with its value and range: "
                             "the profile's budgets, the neural settings (neural models) and "
                             "the model's own keywords")
    parser.add_argument("--profile", help="whose budget values --settings shows (default: the "
                                          "default profile)")
    parser.set_defaults(handler=handle)


def handle(args, argv) -> int:
    from bench.registry import select

    if args.settings:
        return show_settings(args.settings, args.profile)
    specs = select(args.models)
    width = max(len(s.key) for s in specs)
    for spec in specs:
        print(f"{spec.key:<{width}}  {spec.description}")
    print(f"\n{len(specs)} models")
    return 0


def show_settings(key: str, profile_name: str | None) -> int:
    from bench.registry import get
    from ccp.profiles import DEFAULT_PROFILE, get_profile
    from ccp.ranges import described_fields

    spec = get(key)
    sections = [(f"profile budgets (profile {profile_name or DEFAULT_PROFILE}; every model "
                 "reads those of its family)",
                 described_fields(get_profile(profile_name or DEFAULT_PROFILE)))]
    if spec.family == "neural":
        from neural.config import NeuralConfig  # dataclasses only: no torch import

        sections.append(("neural settings (every neural model)",
                         described_fields(NeuralConfig())))
    shown = {name for _, rows in sections for name, _, _ in rows}  # those win over a keyword
    sections.append((f"{spec.key}'s own keywords (as registered)",
                     [(name, value, "") for name, value in spec.keywords().items()
                      if name not in shown]))
    for title, rows in sections:
        print(f"{title}:")
        width = max((len(name) for name, _, _ in rows), default=0)
        for name, value, allowed in rows or [("(none)", "", "")]:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            print(f"  {name:<{width}}  {shown!s:<24} {allowed}".rstrip())
        print()
    print("set any of them with `--set NAME=VALUE` (run, latency); a model keyword reaches the "
          "selected models that take it, and records name it (set_keywords)")
    return 0
