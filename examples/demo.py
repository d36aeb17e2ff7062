"""The whole speechft flow on the bundled example data and a tiny model.

The bundled tiny model and corpus are not part of this version yet; until they are, this script
says so and exits without doing anything.
"""

import sys


def main() -> int:
    sys.stderr.write(
        "The bundled demo (tiny Fun-ASR-Nano model + example corpus) is not part of this version yet.\n"
        "Until it is, follow the README's flow on your own data.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
