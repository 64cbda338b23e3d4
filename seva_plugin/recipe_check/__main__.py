"""``python -m seva_plugin.recipe_check RECIPE.yaml [key=value ...]``, the same as ``seva check-recipe``."""

import sys

from seva_plugin.recipe_check import main

sys.exit(main())
