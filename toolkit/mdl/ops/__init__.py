"""What `mdl` does, as library functions the CLI and the runner share: pull, push, package, sign, verify.

Each function takes everything it needs as parameters (a store, an opened repository or a way to open
one, key files, a `Progress`) and returns a result to render: nothing here reads the environment,
prompts or prints.
"""
