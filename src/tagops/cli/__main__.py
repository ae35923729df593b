"""`python -m tagops.cli`: the same entry point as the `tagops` console script."""

from tagops.cli import main

if __name__ == "__main__":  # importing the module (e.g. walking the package) runs nothing
    main()
