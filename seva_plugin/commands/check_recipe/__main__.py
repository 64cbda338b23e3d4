"""``python -m seva_plugin.commands.check_recipe RECIPE.yaml [key=value ...]``, the same as ``seva check-recipe``."""

import sys

from seva_plugin.commands.check_recipe import main

sys.exit(main())
